"""The admin endpoint's limits (issue 19): a local client holding connections
cannot take the descriptors the AI streams need, nor keep other admin clients
out past admin_timeout_s. The daemon runs with 128 descriptors, as the issue's
report did, and 200 connections are held against it."""
from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from smartstream.v1 import smartstream_pb2 as pb

from .daemon_kit import scrape, until, write_config
from .harness import Daemon, Sim, free_port

HELD = 200
CAP = 8

pytestmark = pytest.mark.usefixtures("mediasim")


def admin_daemon(pool, tmp_path, timeout_s: float) -> Daemon:
    admin = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "smartstream.toml", admin_listen=admin,
                          admin_max_connections=CAP, admin_timeout_s=timeout_s)
    return Daemon(pool, tmp_path, "--config", str(config), admin=admin,
                  exe=("prlimit", "--nofile=128:128", "--", sys.executable, "-m", "smartstream.cli")
                  ).start()


def hold(admin: str, n: int, send: bytes = b"") -> list[socket.socket]:
    host, port = admin.rsplit(":", 1)
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        s.sendall(send)
        s.setblocking(False)
        socks.append(s)
    return socks


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


async def answers(admin: str) -> bool:
    try:
        return (await scrape(admin))["smartstream_active_streams"] >= 0
    except OSError:
        return False


async def test_connections_over_the_cap_are_closed_and_streams_still_open(pool, tmp_path, server):
    daemon = admin_daemon(pool, tmp_path, timeout_s=120)
    socks = []
    try:
        await until(lambda: answers(daemon.admin), "the admin endpoint answers")
        socks = await asyncio.to_thread(hold, daemon.admin, HELD)

        async def refused_all_over_the_cap():
            return sum(map(closed_by_peer, socks)) >= HELD - CAP
        await until(refused_all_over_the_cap, f"{HELD - CAP} connections closed at once")
        assert sum(not closed_by_peer(s) for s in socks) == CAP
        # With the cap's connections held, calls still reach their AI server.
        sim = await Sim(pool, "--calls", "3", "--seconds", "1",
                        "--target", f"127.0.0.1:{server.port}").start()
        summary = await sim.wait()
        recs = [rec for recs in server.streams.values() for rec in recs]
        for rec in recs:
            await asyncio.wait_for(rec.done.wait(), 10)
        assert len(recs) == 3
        assert sum(len(rec.frames(pb.TRACK_INBOUND)) for rec in recs) == summary["frames_written"]
        for s in socks:   # the holders let go: the endpoint serves again, and counted its refusals
            s.close()
        await until(lambda: answers(daemon.admin), "the admin endpoint answers again")
        assert (await scrape(daemon.admin))["smartstream_admin_refused_connections_total"] == HELD - CAP
        assert daemon.proc.poll() is None and "Too many open files" not in daemon.log()
        assert daemon.log().count(f"admin endpoint: {CAP} connections open") == 1
    finally:
        for s in socks:
            s.close()
        daemon.cleanup()


@pytest.mark.parametrize("send", [b"", b"GET /health HTTP/1.1\r\nHost: x\r\n"], ids=["silent", "slow"])
async def test_held_connections_are_closed_at_the_deadline(pool, tmp_path, send):
    daemon = admin_daemon(pool, tmp_path, timeout_s=0.5)
    socks = []
    try:
        await until(lambda: answers(daemon.admin), "the admin endpoint answers")
        socks = await asyncio.to_thread(hold, daemon.admin, CAP + 10, send)

        async def all_closed():
            return all(map(closed_by_peer, socks))
        await until(all_closed, "every held connection closed by the daemon")
        await until(lambda: answers(daemon.admin), "the admin endpoint answers after them")
    finally:
        for s in socks:
            s.close()
        daemon.cleanup()
