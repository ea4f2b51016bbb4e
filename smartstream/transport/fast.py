"""The default transport: standard gRPC over HTTP/2, written by libnghttp2
from Cython (smartstream._h2). Audio frames reach it without Python: the
Router encodes them straight into each stream's send buffer, and flush()
sends every connection's frames of a tick in one socket write.

Streams share a connection up to the server's SETTINGS_MAX_CONCURRENT_STREAMS
(and streams_per_channel); the next stream opens another connection, so the
limit is never hit silently.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time

from google.protobuf.message import DecodeError

from .._h2 import H2Connection
from ..config import Config, TargetSettings
from ..target import Target
from .._tts_wire import read_audio
from ..v1 import smartstream_pb2 as pb
from . import Stream, StreamHandler, Transport

log = logging.getLogger("smartstream.transport")

PATH = "/smartstream.v1.AIStream/Stream"
UNAVAILABLE = 14
STATUS = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
          "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
          "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
          "UNAUTHENTICATED"]


def _ssl_context(ts: TargetSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ts.ca_file)   # verifies the server by default
    if ts.cert_file:
        ctx.load_cert_chain(ts.cert_file, ts.key_file)
    ctx.set_alpn_protocols(["h2"])
    return ctx


class FastStream(Stream):
    def __init__(self, conn: "_Conn", sid: int, handler: StreamHandler):
        self.conn, self.sid, self.handler = conn, sid, handler

    @property
    def reached(self) -> bool:
        return self.conn.connected

    def route(self, router, slot: int, uplink) -> None:
        router.route(slot, uplink, self.conn.h2, self.sid)

    # A stream that no longer takes data is closing: its close is reported on its own.
    def send(self, msg: pb.GatewayMessage) -> None:
        self.conn.h2.send_message(self.sid, msg.SerializeToString())

    def send_audio(self, track: int, seq: int, capture_ns: int, pcm: bytes,
                   synthesized: bool = False) -> None:
        self.conn.h2.send_audio_py(self.sid, track, seq, capture_ns, pcm, synthesized)

    def finish(self) -> None:
        self.conn.h2.end_stream(self.sid)

    def cancel(self, detail: str) -> None:
        if self.conn.streams.pop(self.sid, None) is not None:
            self.conn.h2.reset_stream(self.sid)

    def retire(self, last: pb.GatewayMessage, grace_s: float) -> None:
        if self.conn.streams.pop(self.sid, None) is None:   # out of the table: no more callbacks
            return
        self.conn.h2.mute_stream(self.sid)   # a flood is dropped unread, not decoded
        self.send(last)
        self.finish()
        asyncio.get_running_loop().call_later(grace_s, self.conn.h2.reset_stream, self.sid)


class _Conn:
    """One HTTP/2 connection; the H2Connection's handler."""

    def __init__(self, transport: "FastTransport", target: Target, ts: TargetSettings):
        self.transport, self.target = transport, target
        self.h2 = H2Connection(target.authority, "https" if ts.tls else "http", self)
        self.streams: dict[int, FastStream] = {}
        self.opened = 0
        self.connected = False
        self.last_ping = time.monotonic()
        self._task = asyncio.ensure_future(self._connect(ts))

    async def _connect(self, ts: TargetSettings) -> None:
        loop = asyncio.get_running_loop()
        try:
            ctx = _ssl_context(ts) if ts.tls else None
            await loop.create_connection(
                lambda: self.h2, self.target.host, self.target.port, ssl=ctx,
                server_hostname=(ts.server_name or self.target.host) if ctx else None)
        except (OSError, ssl.SSLError) as e:
            self.h2.close(f"connect to {self.target} failed: {e}", UNAVAILABLE)
            return
        if self.h2.is_open:
            self.connected = True
            for st in list(self.streams.values()):
                st.handler.on_reached()

    def drain(self) -> None:
        """After a GOAWAY the server is going away (a rolling restart): move
        every stream elsewhere now rather than when it finally closes them."""
        if not self.h2.goaway_received:
            return
        for st in list(self.streams.values()):
            st.cancel("server sent GOAWAY")
            st.handler.on_closed("GOAWAY", f"draining: {self.target} sent GOAWAY")

    def usable(self, limit: int) -> bool:
        return self.h2.available_streams > 0 and self.h2.open_streams < limit

    def keepalive(self, now: float, every: float, timeout: float) -> None:
        # Only while streams are open: grpc servers answer pings on an idle
        # connection with GOAWAY too_many_pings (grpc clients do the same).
        if not self.h2.is_open or not self.streams:
            return
        if self.h2.unacked_pings and now - self.last_ping > timeout:
            self.h2.close(f"keepalive: no PING answer from {self.target} in {timeout:.0f} s",
                          UNAVAILABLE)
        elif now - self.last_ping > every:
            self.last_ping = now
            self.h2.ping()

    # -- H2Connection handler --------------------------------------------------

    def on_message(self, sid: int, data: memoryview | bytes) -> None:
        st = self.streams.get(sid)
        if st is None:
            return
        audio = read_audio(data)
        if audio is not None:
            st.handler.on_audio(*audio, len(data))
            return
        try:
            msg = pb.ServerMessage.FromString(data)
        except DecodeError as e:
            log.error("undecodable message from %s on stream %d: %s", self.target, sid, e)
            st.cancel("undecodable message")
            st.handler.on_closed("INTERNAL", f"undecodable ServerMessage from the AI server: {e}")
            return
        st.handler.on_message(msg)

    def on_stream_closed(self, sid: int, status: int, message: str) -> None:
        st = self.streams.pop(sid, None)
        if st is not None:
            st.handler.on_closed(STATUS[status] if 0 <= status < len(STATUS) else "UNKNOWN", message)

    def on_connection_lost(self, reason: str) -> None:
        level = logging.INFO if self.transport.closing else logging.WARNING
        log.log(level, "connection to %s closed: %s", self.target, reason)
        self.transport.forget(self)


class FastTransport(Transport):
    sub_ticks = True

    def __init__(self, config: Config):
        self.config = config
        self.closing = False
        self._conns: dict[tuple[str, bool], list[_Conn]] = {}

    def open_stream(self, target: Target, handler: StreamHandler, tls: bool = False) -> Stream:
        addr, ts = self.address(target, tls)
        key = (addr.authority, ts.tls)
        conns = self._conns.setdefault(key, [])
        conn = next((c for c in conns if c.usable(self.config.streams_per_channel)), None)
        if conn is None:
            conn = _Conn(self, addr, ts)
            conns.append(conn)
            log.info("new connection to %s (%d for this address)%s", addr, len(conns),
                     f" of {target}" if addr is not target else "")
        metadata = [("authorization", f"Bearer {ts.token}")] if ts.token else []
        sid = conn.h2.open_stream(PATH, metadata)
        stream = FastStream(conn, sid, handler)
        conn.streams[sid] = stream
        return stream

    def forget(self, conn: _Conn) -> None:
        for conns in self._conns.values():
            if conn in conns:
                conns.remove(conn)

    def flush(self) -> None:
        now = time.monotonic()
        every, timeout = self.config.keepalive_ms / 1000, self.config.keepalive_timeout_ms / 1000
        for conns in self._conns.values():
            for conn in conns:
                conn.keepalive(now, every, timeout)
                conn.drain()
                conn.h2.flush()

    async def close(self) -> None:
        self.closing = True
        for conns in list(self._conns.values()):
            for conn in list(conns):
                conn.h2.flush()
                conn.h2.close("gateway shutting down")
        self._conns.clear()
