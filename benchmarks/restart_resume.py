"""How fast a restarted daemon resumes every live call, and what the calls
lost while it was down: the daemon is killed with SIGKILL mid-call and
started again on the same pool.

    python3 benchmarks/restart_resume.py [--calls 50] [--down 0.8,3.0] [--transport fast,grpcio]

For each transport and each downtime: N calls (csrc/build/mediasim, 16 kHz)
stream to a grpc.aio AI server in this process; the daemon is SIGKILLed, the
calls go on for --down seconds with nobody draining their rings, then a new
daemon starts. Measured:

  up         the new process's spawn to its first pool heartbeat (interpreter
             and imports: what systemd's Restart= costs before anything else)
  resume     that first heartbeat to the AI server receiving each call's
             StreamStart with resumed=true (p50 / max over the calls): the
             claim is at most 200 ms
  lost       per call, the frames written that never reached the AI server,
             beside what was counted: the module's uplink ring keeps what a
             dead daemon did not drain (256 KiB: 7.9 s of 16 kHz) and drops
             the oldest beyond that, counted (mediasim's "dropped", the
             daemon's smartstream_ring_overruns_total); the daemon's resume
             window (2 s) drops only while a stream is down after the restart
             (smartstream_frames_dropped_total{reason="resume_overflow"})

Results go to results/restart_resume.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

from macro import MEDIASIM, REPO, free_port, scrape

from smartstream import _ring
from smartstream.v1 import smartstream_pb2_grpc as pb_grpc

HERE = Path(__file__).resolve().parent
KILL_AT = 2.0         # s after the calls start
AFTER = 4.0           # s the calls go on after the restart


class Recorder(pb_grpc.AIStreamServicer):
    """Per call: when each StreamStart arrived, and every audio sequence seen."""

    def __init__(self):
        self.starts: dict[str, list[tuple[int, bool]]] = {}
        self.seqs: dict[str, set[int]] = {}

    async def Stream(self, request_iterator, context):
        uuid = None
        async for msg in request_iterator:
            if msg.HasField("start"):
                uuid = msg.start.call_uuid
                self.starts.setdefault(uuid, []).append((time.monotonic_ns(), msg.start.resumed))
            elif msg.HasField("audio"):
                self.seqs.setdefault(uuid, set()).add(msg.audio.sequence)


def daemon(pool: str, transport: str, admin: str, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "smartstream.cli", "run", "--pool-path", pool,
                             "--pool-slots", "256", "--transport", transport, "--log-level", "WARNING"],
                            stdout=log, stderr=log, cwd=REPO, env={**os.environ, "SMARTSTREAM_ADMIN_LISTEN": admin})


async def first_heartbeat(pool: str, after_ns: int, proc: subprocess.Popen) -> int:
    """Monotonic ns at which the pool's heartbeat was first newer than after_ns."""
    p = _ring.Pool.attach(pool)
    while p.heartbeat_ns <= after_ns:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited {proc.returncode}")
        await asyncio.sleep(0.002)
    return p.heartbeat_ns


async def run_one(transport: str, calls: int, down: float, work: Path) -> dict:
    rec, server = Recorder(), grpc.aio.server()
    pb_grpc.add_AIStreamServicer_to_server(rec, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    pool, admin = f"/dev/shm/ssbench-restart-{os.getpid()}.pool", f"127.0.0.1:{free_port()}"
    log = open(work / f"restart-{transport}.log", "ab")
    first = daemon(pool, transport, admin, log)
    second = sim = None
    try:
        while not os.path.exists(pool):
            await asyncio.sleep(0.01)
        await first_heartbeat(pool, 0, first)
        sim = await asyncio.create_subprocess_exec(
            str(MEDIASIM), "--pool", pool, "--calls", str(calls), "--seconds", str(KILL_AT + down + AFTER),
            "--source", "pattern", "--target", f"127.0.0.1:{port}", "--uuid-prefix", "rr",
            stdout=asyncio.subprocess.PIPE)
        await asyncio.sleep(KILL_AT)
        first.send_signal(signal.SIGKILL)
        first.wait()
        await asyncio.sleep(down)
        spawned = time.monotonic_ns()
        second = daemon(pool, transport, admin, log)
        up = await first_heartbeat(pool, spawned, second)
        while sum(any(r for _, r in s) for s in rec.starts.values()) < calls:
            await asyncio.sleep(0.002)
        resume_ms = [(next(t for t, r in s if r) - up) / 1e6 for s in rec.starts.values()]
        out = (await sim.communicate())[0]
        summary = [json.loads(x) for x in out.splitlines() if x.startswith(b'{"summary"')][-1]
        await asyncio.sleep(1.0)   # the last frames and StreamEnd
        per_call = summary["frames_written"] // calls
        lost = [per_call - len(rec.seqs.get(u, ())) for u in rec.starts]
        dropped = scrape(admin).get('smartstream_frames_dropped_total{reason="resume_overflow"}', 0)
        return dict(transport=transport, calls=calls, down_s=down, up_ms=(up - spawned) / 1e6,
                    resume_p50_ms=statistics.median(resume_ms), resume_max_ms=max(resume_ms),
                    lost_per_call_max=max(lost), lost_total=sum(lost), overflow_counted=int(dropped),
                    ring_dropped=summary["dropped"])
    finally:
        for p in (first, second):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        if sim and sim.returncode is None:
            sim.kill()
        log.close()
        await server.stop(0)
        if os.path.exists(pool):
            os.unlink(pool)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--down", default="0.8,3,10", help="seconds the daemon stays dead, comma-separated")
    ap.add_argument("--transport", default="fast,grpcio")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    (args.out / "raw").mkdir(parents=True, exist_ok=True)
    runs = [await run_one(t, args.calls, float(d), args.out / "raw")
            for t in args.transport.split(",") for d in args.down.split(",")]
    lines = [f"Daemon SIGKILLed {KILL_AT:g} s into {args.calls} calls of 16 kHz and restarted on the "
             "same pool; the resume bound is 2 s.\n",
             "| transport | down s | spawn → up ms | up → resumed p50 / max ms | frames lost (max per call / all) "
             "| counted as resume_overflow | dropped by the ring |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['transport']} | {r['down_s']:g} | {r['up_ms']:.0f} | {r['resume_p50_ms']:.1f} / "
              f"{r['resume_max_ms']:.1f} | {r['lost_per_call_max']} / {r['lost_total']} | "
              f"{r['overflow_counted']} | {r['ring_dropped']} |" for r in runs]
    text = "\n".join(lines) + "\n"
    (args.out / "restart_resume.md").write_text(text)
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
