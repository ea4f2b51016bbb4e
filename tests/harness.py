"""Real processes for end-to-end tests: the gateway daemon and the C media
simulator (csrc/mediasim.c, built from the same library as the module)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from smartstream import _ring

REPO = Path(__file__).resolve().parent.parent
MEDIASIM = REPO / "csrc" / "build" / "mediasim"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """`smartstream run` as a subprocess, logging to a file the test can read."""

    def __init__(self, pool: str, logdir: Path, *args: str, slots: int = 16,
                 admin: str | None = None, exe: tuple = (sys.executable, "-m", "smartstream.cli")):
        self.pool, self.args, self.slots, self.exe = pool, args, slots, exe
        # Its own admin port: two test runs (or a real daemon) must not collide.
        self.admin = admin or f"127.0.0.1:{free_port()}"
        self.logfile = logdir / f"daemon-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "Daemon":
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [*self.exe, "run", "--pool-path", self.pool,
             "--pool-slots", str(self.slots), "--log-level", "DEBUG", *self.args],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, "SMARTSTREAM_ADMIN_LISTEN": self.admin})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                if _ring.Pool.attach(self.pool).daemon_alive():
                    return self
            except _ring.PoolError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"daemon not up after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        return self.proc.returncode if self.proc else 0

    def cleanup(self) -> None:
        self.stop(signal.SIGKILL)
        if os.path.exists(self.pool):
            os.unlink(self.pool)


class Sim:
    """The media simulator: JSON lines from stdout are its control messages."""

    def __init__(self, pool: str, *args: str):
        self.cmd = [str(MEDIASIM), "--pool", pool, *args]
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict] = []
        self.summary: dict | None = None
        self._reader = None

    async def start(self) -> "Sim":
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        async for line in self.proc.stdout:
            msg = json.loads(line)
            if msg.get("summary"):
                self.summary = msg
            else:
                self.lines.append(msg)

    async def wait(self, timeout: float = 60.0) -> dict:
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        await self._reader
        err = (await self.proc.stderr.read()).decode(errors="replace")
        assert rc == 0, f"mediasim exited {rc}: {err}"
        return self.summary

    def messages(self, type_: str, uuid: str | None = None) -> list[dict]:
        return [m for m in self.lines if m["type"] == type_ and (uuid is None or m["uuid"] == uuid)]
