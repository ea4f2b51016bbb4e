"""`smartstream run` on a pool it cannot use: one line saying why, exit 1, no
traceback; a re-attached pool of another size says which size wins."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time

import pytest

from smartstream import _ring

from .daemon_kit import start_daemon
from .harness import REPO, Daemon, free_port


def run_daemon(pool: str, slots: int = 4) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "smartstream.cli", "run", "--pool-path", pool,
                        "--pool-slots", str(slots)], capture_output=True, text=True, timeout=30,
                       cwd=REPO, env={**os.environ, "SMARTSTREAM_ADMIN_LISTEN": f"127.0.0.1:{free_port()}"})
    return r.returncode, r.stdout + r.stderr


def wrong_version(path: str) -> None:
    _ring.Pool.open(path, 2, 0o600).close()
    with open(path, "r+b") as f:   # ss_pool_header: u64 magic, then u32 version
        f.seek(8)
        f.write(struct.pack("<I", 999))


def truncated(path: str) -> None:
    _ring.Pool.open(path, 2, 0o600).close()
    os.truncate(path, 100)


BAD_POOLS = {
    "garbage": (lambda p: open(p, "wb").write(os.urandom(65536)), "not a smartstream pool"),
    "truncated": (truncated, "pool truncated"),
    "wrong version": (wrong_version, "pool layout version 999"),
    "a directory": (os.mkdir, "Is a directory"),
    "no directory": (lambda p: None, "no such"),
    "open to others": (lambda p: open(p, "wb").close() or os.chmod(p, 0o666), "lets other users in"),
    "a symlink": (lambda p: os.symlink("/dev/null", p), "symbolic link"),
}


@pytest.mark.parametrize("case", BAD_POOLS)
def test_a_bad_pool_is_refused_in_one_line(case, shm_path):
    make, message = BAD_POOLS[case]
    path = shm_path + "-missing/x.pool" if case == "no directory" else shm_path + ".pool"
    make(path)
    if os.path.isfile(path) and not os.path.islink(path) and case != "open to others":
        os.chmod(path, 0o600)
    try:
        rc, out = run_daemon(path)
    finally:
        if os.path.isdir(path):
            os.rmdir(path)
    assert rc == 1, out
    assert "Traceback" not in out
    [line] = [ln for ln in out.splitlines() if "ERROR" in ln]
    assert "cannot run:" in line and message.lower() in line.lower() and path in line


def test_a_pool_held_by_a_live_daemon_is_refused(pool, tmp_path):
    daemon, _ = start_daemon(pool, tmp_path)
    try:
        rc, out = run_daemon(pool)
        assert rc == 1 and "Traceback" not in out
        assert f"in use by another smartstream daemon (pid {daemon.proc.pid})" in out
    finally:
        daemon.cleanup()


def test_reattaching_a_pool_of_another_size_says_which_wins(pool, tmp_path):
    first = Daemon(pool, tmp_path, slots=4).start()
    try:
        first.stop(signal.SIGKILL)   # the pool stays for the next daemon
        second = Daemon(pool, tmp_path, slots=8).start()
        said = f"pool {pool} has 4 slots, pool_slots is 8: the pool's 4 win"
        deadline = time.monotonic() + 15   # the first one's last heartbeat may still look fresh
        while said not in second.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert said in second.log()
        assert _ring.Pool.attach(pool).slot_count == 4
        second.cleanup()
    finally:
        first.cleanup()
