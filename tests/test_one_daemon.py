"""One daemon per pool, and what FreeSWITCH's side learns when it goes.

A second `smartstream run` on a live pool is refused with one clear line and
leaves the first one's pool alone; a clean stop is in the pool header by the
time the daemon has exited, so the module (here the same C library, through
Pool.attach) says "stopped" without waiting for the heartbeat to age; a
kill -9 never reads as "stopped", and reads as "lost" once the configured
heartbeat timeout has passed.
"""
import os
import signal
import subprocess
import sys
import time

from smartstream import _ring

from .harness import REPO, free_port


def run_second(pool: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smartstream.cli", "run", "--pool-path", pool, "--pool-slots", "16"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "SMARTSTREAM_ADMIN_LISTEN": f"127.0.0.1:{free_port()}"})


def test_a_second_daemon_is_refused_and_the_first_goes_on(daemon, pool):
    first = daemon()
    module = _ring.Pool.attach(pool)
    epoch = module.daemon_epoch
    second = run_second(pool)
    out = second.stdout + second.stderr
    assert second.returncode == 1, out
    assert f"is in use by another smartstream daemon (pid {first.proc.pid})" in out
    assert "Traceback" not in out
    assert module.daemon_epoch == epoch            # the live daemon's pool untouched
    assert module.daemon_health() == "alive"
    assert first.stop() == 0


def test_a_clean_stop_is_seen_at_once(daemon, pool):
    d = daemon()
    module = _ring.Pool.attach(pool)
    assert module.daemon_health() == "alive"
    assert d.stop(signal.SIGTERM) == 0
    # No wait: the heartbeat stamped just before exit would still look fresh.
    assert module.daemon_health() == "stopped"
    assert module.heartbeat_ns == 0


def test_a_killed_daemon_is_lost_not_stopped(daemon, pool, monkeypatch):
    monkeypatch.setenv("SMARTSTREAM_HEARTBEAT_TIMEOUT_MS", "300")
    d = daemon()
    module = _ring.Pool.attach(pool)
    assert module.stale_ns == 300_000_000
    d.stop(signal.SIGKILL)
    last = module.heartbeat_ns
    health = module.daemon_health()
    while health == "alive":
        time.sleep(0.02)
        health = module.daemon_health()
    assert health == "lost"
    assert module.heartbeat_ns == last             # nobody stamped it since
    # The kernel dropped the dead daemon's lock: the next one takes the pool over.
    nxt = daemon()
    assert _ring.Pool.attach(pool).daemon_epoch == module.daemon_epoch
    assert module.daemon_health() == "alive"
    assert nxt.stop() == 0
