"""`smartstream demo`: the whole round trip on loopback with nothing to set up.

The daemon runs here; the example AI server (examples/echo_server.py) and the
media simulator (csrc/mediasim, standing in for FreeSWITCH) run as processes
beside it. The simulator plays a tone per call, the AI server echoes it back
after 500 ms, and the simulator records what each caller heard.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import wave
from collections import Counter
from pathlib import Path

import uvloop

from .config import Config
from .gateway import Gateway
from .metrics import quantile

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_listening(port: int, timeout: float = 15.0) -> None:
    """The AI server is up once it accepts a connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def _heard_seconds(path: Path) -> float:
    """Seconds of non-silent audio in a recording."""
    with wave.open(str(path)) as w:
        data = w.readframes(w.getnframes())
        frame = w.getframerate() // 50 * 2
    loud = sum(1 for i in range(0, len(data), frame) if any(data[i:i + frame]))
    return loud / 50


async def _demo(cfg: Config, calls: int, seconds: int) -> int:
    subprocess.run(["make", "-s", "-C", str(REPO / "csrc")], check=True)
    port = _free_port()
    ai_listen = f"127.0.0.1:{port}"
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "examples" / "echo_server.py"), "--listen", ai_listen)
    await _wait_listening(port)
    gw = Gateway(cfg)
    gw.start()
    rec_dir = Path(tempfile.mkdtemp(prefix="smartstream-demo-"))
    sim = await asyncio.create_subprocess_exec(
        str(REPO / "csrc" / "build" / "mediasim"), "--pool", cfg.pool_path, "--calls", str(calls),
        "--seconds", str(seconds), "--source", "tone", "--target", ai_listen,
        "--record", str(rec_dir), "--payload", '{"demo": true}', stdout=asyncio.subprocess.PIPE)
    print(f"demo: {calls} simulated calls for {seconds} s -> smartstream -> AI server {ai_listen}")
    m = gw.metrics
    t0 = time.monotonic()
    while sim.returncode is None:
        try:
            await asyncio.wait_for(sim.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
        print(f"  t={time.monotonic() - t0:4.1f}s streams={len(gw.calls)}"
              f" frames->AI={int(m.frames_sent._value.get())}"
              f" audio<-AI={int(m.audio_messages_received._value.get())}"
              f" hook->send p99<={quantile(m.hook_to_send, .99) * 1000:.0f}ms"
              f" tick lateness p99<={quantile(m.tick_lateness, .99) * 1000:.0f}ms")
    lines = [json.loads(x) for x in (await sim.stdout.read()).decode().splitlines() if x]
    await asyncio.sleep(0.1)
    await gw.stop()
    server.terminate()
    await server.wait()
    heard = {p.stem: _heard_seconds(p) for p in sorted(rec_dir.glob("*.wav"))}
    for uuid, s in heard.items():
        print(f"  {uuid}: heard {s:.1f} s of echoed audio (recording in {rec_dir})")
    kinds = Counter(msg["type"] for msg in lines if not msg.get("summary"))
    print("  control messages to FreeSWITCH: " +
          (", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"))
    ok = heard and all(s > 0 for s in heard.values()) and m.frames_sent._value.get() > 0
    print("demo: round trip OK" if ok else "demo: round trip FAILED")
    return 0 if ok else 1


def run_demo(cfg: Config, calls: int, seconds: int) -> int:
    if cfg.pool_path == Config.pool_path:
        cfg.pool_path = f"/dev/shm/smartstream-demo-{os.getpid()}.pool"
    try:
        return uvloop.run(_demo(cfg, calls, seconds))
    finally:
        if os.path.exists(cfg.pool_path):
            os.unlink(cfg.pool_path)
