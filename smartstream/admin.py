"""The daemon's admin endpoint: GET /metrics, /status and /health over HTTP/1.1.

It runs on asyncio streams in the daemon's own loop. Every answer is built from
memory in one go, with no await in between, so the ticker is never held up for
longer than it takes to format it. At most admin_max_connections are served at
once, each for admin_timeout_s at most: a local client holding connections
cannot take the descriptors the AI streams need; one over the cap is closed at
once and counted.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os

from prometheus_client import CONTENT_TYPE_LATEST, Counter, ProcessCollector, generate_latest

from .target import parse_target

log = logging.getLogger("smartstream.admin")

MAX_HEAD = 8192        # request line and headers
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
JSON = "application/json"


class AdminServer:
    def __init__(self, gateway):
        self.gw = gateway
        ProcessCollector(registry=gateway.metrics.registry)   # process_cpu_seconds_total, ...
        self.refused = Counter("smartstream_admin_refused_connections",
                               "admin connections closed unserved: admin_max_connections reached",
                               registry=gateway.metrics.registry)
        self._open = 0
        self.refused_since_below = 0
        self._server: asyncio.Server | None = None
        self._routes = {"/metrics": self._metrics, "/status": self._status, "/health": self._health}

    async def start(self, listen: str) -> None:
        addr = parse_target(listen)
        try:
            self._server = await asyncio.start_server(self._serve, addr.host, addr.port,
                                                      limit=MAX_HEAD)
        except OSError as e:
            raise OSError(e.errno, f"admin_listen {addr}: {os.strerror(e.errno)}") from None
        log.info("admin endpoint on http://%s (/metrics /status /health)", addr)

    async def close(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cap = self.gw.config.admin_max_connections
        if self._open >= cap:
            if not self.refused_since_below:   # once per time the cap is reached, not per client
                log.warning("admin endpoint: %d connections open (admin_max_connections), "
                            "closing new ones unserved", cap)
            self.refused_since_below += 1
            self.refused.inc()
            writer.transport.abort()   # its descriptor is free now, not after a close handshake
            return
        self._open += 1
        try:
            await asyncio.wait_for(self._exchange(reader, writer), self.gw.config.admin_timeout_s)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError, ValueError):
            pass   # not HTTP, too big or too slow: just hang up
        finally:
            self._open -= 1
            self.refused_since_below = 0
            writer.transport.abort()   # no-op once closed; else the deadline passed mid-way

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        status, ctype, body = self._answer(method, target.split("?", 1)[0])
        writer.write(f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        if method != "HEAD":
            writer.write(body)
        writer.close()   # after what is buffered has gone out
        await writer.wait_closed()

    def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        route = self._routes.get(path)
        if route is None:
            return 404, "text/plain", b"try /metrics, /status or /health\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        return route()

    def _metrics(self):
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.gw.metrics.registry)

    def _status(self):
        gw = self.gw
        doc = {"pool": {"path": gw.config.pool_path, "slots": gw.pool.slot_count},
               "daemon_epoch": gw.pool.daemon_epoch,
               "log_level": logging.getLevelName(logging.getLogger().level),
               "streams": gw.status()}
        return 200, JSON, json.dumps(doc).encode()

    def _health(self):
        # Every tick stamps the heartbeat: ticked, and fresh, means the ticker runs.
        ok = self.gw.ticks > 0 and self.gw.pool.daemon_alive()
        doc = {"ok": ok, "ticks": self.gw.ticks, "streams": len(self.gw.calls)}
        return 200 if ok else 503, JSON, json.dumps(doc).encode()
