"""smartstreamctl list/status/health against the real daemon's admin endpoint,
with calls from the media simulator streaming to a real AI server."""
from __future__ import annotations

import asyncio

import pytest

from smartstream import ctl
from smartstream.admin import AdminServer
from smartstream.config import Config
from smartstream.gateway import Gateway

from .daemon_kit import ctl as run_ctl
from .daemon_kit import free_port, start_daemon
from .harness import Sim

pytestmark = pytest.mark.usefixtures("mediasim")


def admin_env(admin: str) -> dict:
    return {"SMARTSTREAM_ADMIN_LISTEN": admin}


async def test_list_status_and_health_show_the_live_streams(pool, tmp_path, server):
    daemon, admin = start_daemon(pool, tmp_path)
    args = ("--config", "/dev/null")   # an empty file: built-in defaults, then the environment
    try:
        rc, out, _ = await run_ctl(*args, "health", env=admin_env(admin))
        assert (rc, out.strip()) == (0, "ok: 0 streams, " + out.split(", ")[1].strip())
        sim = await Sim(pool, "--calls", "2", "--seconds", "4",
                        "--target", f"127.0.0.1:{server.port}", "--uuid-prefix", "ctl").start()
        for _ in range(2):
            await asyncio.wait_for(server.started.get(), 10)
        rc, out, _ = await run_ctl(*args, "list", env=admin_env(admin))
        lines = out.splitlines()
        assert rc == 0 and lines[0].split() == ["uuid", "target", "state"]
        assert sorted(line.split() for line in lines[1:]) == [
            [f"ctl-000{i}", f"127.0.0.1:{server.port}", "streaming"] for i in range(2)]
        rc, out, _ = await run_ctl(*args, "status", env=admin_env(admin))
        lines = out.splitlines()
        assert rc == 0 and lines[0].startswith(f"pool {pool}: 16 slots, 2 streams, daemon epoch ")
        assert lines[1].split() == ["uuid", "target", "state", "frames", "out", "frames", "in",
                                    "drops", "reconnects"]
        assert len(lines) == 4
        rc, out, _ = await run_ctl(*args, "status", "ctl-0001", env=admin_env(admin))
        [row] = out.splitlines()[2:]
        uuid, target, state, frames_out, frames_in, drops, reconnects = row.split()
        assert (uuid, state, drops, reconnects) == ("ctl-0001", "streaming", "0", "0")
        assert int(frames_out) > 0
        rc, _, err = await run_ctl(*args, "status", "not-a-call", env=admin_env(admin))
        assert rc == ctl.NO_STREAM == 8 and "no stream for not-a-call" in err
        await sim.wait()
    finally:
        daemon.cleanup()


@pytest.mark.parametrize("command", ["list", "status", "health"])
async def test_daemon_not_running_exits_6(command):
    admin = f"127.0.0.1:{free_port()}"
    rc, out, err = await run_ctl("--config", "/dev/null", command, env=admin_env(admin))
    assert rc == ctl.DAEMON_DOWN == 6 and out == ""
    assert f"the gateway daemon is not running, or not at http://{admin}" in err


async def test_health_is_503_until_the_ticker_runs(pool):
    """In process: a Gateway not yet started has no heartbeat, so it is unhealthy."""
    gw = Gateway(Config(pool_path=pool, pool_slots=4))
    admin = AdminServer(gw)
    listen = f"127.0.0.1:{free_port()}"
    await admin.start(listen)
    try:
        rc, _, err = await run_ctl("--config", "/dev/null", "health", env=admin_env(listen))
        assert rc == ctl.UNHEALTHY == 7 and "unhealthy" in err
        gw.start()
        rc, out, _ = await run_ctl("--config", "/dev/null", "health", env=admin_env(listen))
        assert rc == 0 and out.startswith("ok: 0 streams")
    finally:
        await admin.close()
        await gw.stop()
