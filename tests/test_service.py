"""Running as a service: the systemd unit, readiness notification, SIGTERM and
SIGHUP on the real daemon, and its log formats."""
from __future__ import annotations

import asyncio
import grp
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from smartstream.v1 import smartstream_pb2 as pb

from .daemon_kit import start_daemon, until, write_config
from .harness import REPO, Sim

UNIT = REPO / "packaging" / "smartstream.service"

pytestmark = pytest.mark.usefixtures("mediasim")






def target_table(server, token: str) -> str:
    return f'[targets."127.0.0.1:{server.port}"]\ntoken = "{token}"\n'


async def started(server, n: int) -> list:
    return [await asyncio.wait_for(server.started.get(), 10) for _ in range(n)]


def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    """The unit `make unit` writes for this environment, verified as is."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is not installed (`make test` installs Debian's systemd)"
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "User=smartstream", "Group=freeswitch", "SupplementaryGroups=smartstream", "UMask=0007", "RemoveIPC=no",
                 "RuntimeDirectory=smartstream", "RuntimeDirectoryMode=0750",
                 "RuntimeDirectoryPreserve=yes", "MemoryDenyWriteExecute=yes"):
        assert f"\n{line}\n" in text
    assert not re.search(r"^PrivateIPC=", text, re.M)   # it would hide /dev/shm from FreeSWITCH
    subprocess.run(["make", "-s", "unit", f"VENV={sys.prefix}", f"UNITDIR={tmp_path}"],
                   cwd=REPO, check=True)
    unit = tmp_path / "smartstream.service"
    exe = re.search(r"^ExecStart=(\S+) run ", unit.read_text(), re.M).group(1)
    assert exe == os.path.join(sys.prefix, "bin", "smartstream") and os.access(exe, os.X_OK)
    r = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


async def test_sigterm_ends_every_stream_and_tells_systemd(pool, tmp_path, server, monkeypatch):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    daemon, _ = start_daemon(pool, tmp_path)
    sim = None
    try:
        assert notify.recv(256) == b"READY=1"
        sim = await Sim(pool, "--calls", "3", "--seconds", "0",
                        "--target", f"127.0.0.1:{server.port}", "--uuid-prefix", "term").start()
        recs = await started(server, 3)
        assert await asyncio.to_thread(daemon.stop, signal.SIGTERM) == 0
        assert notify.recv(256) == b"STOPPING=1"
        for rec in recs:
            await asyncio.wait_for(rec.done.wait(), 10)
            assert rec.messages[-1].end.reason == pb.StreamEnd.REASON_SHUTDOWN
        assert "shutting down: ending 3 streams" in daemon.log()
    finally:
        notify.close()
        if sim:
            sim.proc.terminate()
            await sim.wait()
        daemon.cleanup()


async def test_sighup_reloads_log_level_and_tokens_without_ending_streams(pool, tmp_path, server):
    daemon, admin = start_daemon(pool, tmp_path, log_level="DEBUG",
                                 extra=target_table(server, "old-token-1234"))
    config = tmp_path / f"smartstream-{admin.rsplit(':', 1)[1]}.toml"
    target = f"127.0.0.1:{server.port}"
    live = None
    try:
        live = await Sim(pool, "--calls", "1", "--seconds", "0", "--target", target,
                         "--uuid-prefix", "live").start()
        [rec] = await started(server, 1)
        write_config(config, admin_listen=admin, log_level="WARNING",
                     extra=target_table(server, "new-token-5678"))
        frames_before = len(rec.frames())
        daemon.proc.send_signal(signal.SIGHUP)

        async def reloaded():
            with urllib.request.urlopen(f"http://{admin}/status", timeout=5) as r:
                return json.loads(r.read())["log_level"] == "WARNING"
        await until(reloaded, "log level WARNING after SIGHUP")
        after = await Sim(pool, "--calls", "1", "--seconds", "1", "--target", target,
                          "--uuid-prefix", "after").start()
        [new] = await started(server, 1)
        await after.wait()
        await asyncio.wait_for(new.done.wait(), 10)

        async def flowing():
            return len(rec.frames()) > frames_before + 25
        await until(flowing, "frames on the live stream after the reload")
        assert live.proc.returncode is None and "end" not in rec.kinds()
        assert server.auth == {"live-0000": "Bearer old-token-1234",
                               "after-0000": "Bearer new-token-5678"}
        log = daemon.log()
        assert re.search(r"^\S+Z INFO smartstream\.call uuid=live-0000 opening new stream", log, re.M)
        assert "uuid=after-0000" not in log   # its INFO lines are below WARNING now
        assert "token-1234" not in log and "token-5678" not in log
        live.proc.terminate()
        await live.wait()
        await asyncio.wait_for(rec.done.wait(), 10)
        assert len(server.streams["live-0000"]) == 1   # never dropped nor resumed
        assert rec.messages[-1].end.reason == pb.StreamEnd.REASON_HANGUP
    finally:
        if live and live.proc.returncode is None:
            live.proc.terminate()
        daemon.cleanup()


async def test_json_logs_carry_the_call_uuid_and_never_the_token(pool, tmp_path, server):
    daemon, _ = start_daemon(pool, tmp_path, log_format="json",
                             extra=target_table(server, "tok-9f8e7d6c5b4a"))
    try:
        sim = await Sim(pool, "--calls", "1", "--seconds", "1",
                        "--target", f"127.0.0.1:{server.port}", "--uuid-prefix", "js").start()
        await sim.wait()
        [rec] = server.streams["js-0000"]
        await asyncio.wait_for(rec.done.wait(), 10)
        assert server.auth["js-0000"] == "Bearer tok-9f8e7d6c5b4a"   # it was configured and used
        assert daemon.stop() == 0
        log = daemon.log()
        assert "tok-9f8e7d6c5b4a" not in log
        lines = [json.loads(line) for line in log.splitlines() if line.strip()]
        assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
        about_call = [line for line in lines if line.get("uuid") == "js-0000"]
        assert any(line["msg"].startswith("opening new stream") for line in about_call)
        assert any(line["msg"].startswith("stream ended") for line in about_call)
    finally:
        daemon.cleanup()


def other_group() -> str | None:
    """A group this process may give its files that is not its own primary group."""
    groups = [g for g in os.getgroups() if g != os.getgid()]
    if os.geteuid() == 0:
        groups = [g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getgid()]
    return grp.getgrgid(groups[0]).gr_name if groups else None


async def test_the_pool_is_given_to_pool_group(pool, tmp_path):
    group = other_group()
    if group is None:
        pytest.skip("this user is in no group besides its primary one")
    daemon, _ = start_daemon(pool, tmp_path, pool_group=group)
    try:
        st = os.stat(pool)
        assert st.st_gid == grp.getgrnam(group).gr_gid and st.st_mode & 0o777 == 0o660
    finally:
        daemon.cleanup()


def test_an_admin_address_in_use_stops_the_daemon_naming_it(pool, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin = f"127.0.0.1:{taken.getsockname()[1]}"
        config = write_config(tmp_path / "s.toml", admin_listen=admin, pool_path=pool)
        r = subprocess.run([sys.executable, "-m", "smartstream.cli", "run", "--config", str(config)],
                           capture_output=True, text=True, cwd=REPO, timeout=30)
    assert r.returncode == 1
    assert f"admin_listen {admin}: Address already in use" in r.stderr
