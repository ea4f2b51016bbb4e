"""For the service tests: the daemon (tests/harness.Daemon) with a config file
that puts its admin endpoint on a free loopback port, smartstreamctl as a real
process and a scrape of the daemon's /metrics."""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .harness import REPO, Daemon, free_port


def write_config(path: Path, **keys) -> Path:
    """A TOML file of top-level keys plus raw TOML in `extra` (JSON scalars are TOML too)."""
    extra = keys.pop("extra", "")
    lines = [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def start_daemon(pool: str, tmp_path: Path, extra: str = "", **keys) -> tuple[Daemon, str]:
    """A daemon whose admin endpoint is on a free port, once that endpoint answers
    (the harness returns at the first heartbeat, which can come before it)."""
    admin = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path / f"smartstream-{admin.rsplit(':', 1)[1]}.toml",
                          admin_listen=admin, extra=extra, **keys)
    daemon = Daemon(pool, tmp_path, "--config", str(config), admin=admin).start()
    deadline = time.monotonic() + 10
    while True:
        try:
            _get(f"http://{admin}/health")
            return daemon, admin
        except OSError:
            if time.monotonic() > deadline or daemon.proc.poll() is not None:
                daemon.cleanup()
                raise RuntimeError(f"no admin endpoint at {admin}:\n{daemon.log()}") from None
            time.sleep(0.05)


async def ctl(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    """smartstreamctl in its own process: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smartstream.ctl", *args, cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


async def scrape(admin: str) -> dict[str, float]:
    """Every sample of GET /metrics by name (labels joined in: name{k="v"})."""
    text = await asyncio.to_thread(_get, f"http://{admin}/metrics")
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    """Wait for an async predicate; fail naming `what` if it never holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)
