"""Soak: N simulated calls that keep hanging up and being replaced, for a
long time, through one daemon; run by hand, not by CI.

    python3 tests/soak/soak.py --calls 500 --minutes 30            # fast transport
    python3 tests/soak/soak.py --calls 100 --minutes 10 --transport grpcio --reset-every 50

csrc/build/mediasim runs --calls lines with --churn: each call lasts
--call-seconds, the lines start staggered so hang-ups are spread evenly, and
a line whose call ended starts a new call with a new uuid. The AI server is
benchmarks/sinks.py h2 (cheap enough to take 500 calls); with --reset-every K
it resets every K-th stream (RST_STREAM CANCEL), so the gateway's cancel and
resume paths run all along, the path where grpcio is known to leak.

Every --interval seconds it records the daemon's resident memory, open file
descriptors and threads, the pool's slots in use, the streams open at the AI
server, and from /metrics the interval's p99 tick lateness and hook-to-send
latency. At the end, with every call over, it checks what must hold: no slot,
stream or descriptor left behind, memory flat (the last quarter against the
second), latency not drifting, nothing lost. Writes OUT/soak-<transport>-<N>.md
and .json; exits 1 if a check failed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from macro import MEDIASIM, bucket_counts, bucket_quantile, free_port, read_json, scrape, wait_for  # noqa: E402

from smartstream import _ring  # noqa: E402

RSS_GROWTH_MAX = 0.05      # the last quarter's median RSS over the second quarter's
DRIFT_MAX_MS = 5.0         # p99 hook-to-send, last quarter over the second


def proc_status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return dict(rss_kib=int(fields["VmRSS"].split()[0]), threads=int(fields["Threads"]),
                fds=len(os.listdir(f"/proc/{pid}/fd")))


def p99_ms(before: dict, after: dict, name: str) -> float:
    return bucket_quantile(bucket_counts(before, after, name), 0.99) * 1e3


class SlotCounter:
    """Slots not FREE, from the pool's scan (which reports changes only)."""

    def __init__(self, path: str):
        self.pool, self.state = _ring.Pool.attach(path), {}

    def in_use(self) -> int:
        for slot, _gen, state in self.pool.scan():
            self.state[slot] = state
        return sum(st != _ring.SLOT_FREE for st in self.state.values())


def quarter_median(samples: list[dict], key: str, q: int) -> float:
    n = len(samples)
    part = samples[q * n // 4:(q + 1) * n // 4] or samples[-1:]
    return statistics.median(s[key] for s in part)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--call-seconds", type=float, default=30)
    ap.add_argument("--transport", choices=("fast", "grpcio"), default="fast")
    ap.add_argument("--reset-every", type=int, default=0, help="reset every K-th stream (0: none)")
    ap.add_argument("--interval", type=float, default=30)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"soak-{args.transport}-{args.calls}"
    pool, status = f"/dev/shm/{tag}-{os.getpid()}.pool", args.out / f"{tag}.sink.json"
    admin, port = f"127.0.0.1:{free_port()}", free_port()
    log = open(args.out / f"{tag}.log", "wb")
    procs = []

    def spawn(cmd, **kw):
        p = subprocess.Popen(cmd, stdout=kw.pop("stdout", log), stderr=log, cwd=REPO, **kw)
        procs.append(p)
        return p

    samples, checks = [], []
    try:
        spawn([sys.executable, str(REPO / "benchmarks" / "sinks.py"), "h2", "--port", str(port),
               "--status", str(status), "--sample-every", "0", "--reset-every", str(args.reset_every)])
        wait_for(status.exists, 10, "sink did not start")
        gw = spawn([sys.executable, "-m", "smartstream.cli", "run", "--pool-path", pool,
                    "--pool-slots", str(args.calls + 16), "--transport", args.transport,
                    "--log-level", "WARNING"], env={**os.environ, "SMARTSTREAM_ADMIN_LISTEN": admin})
        wait_for(lambda: os.path.exists(pool) and gw.poll() is None, 20, "daemon did not start")
        time.sleep(1)
        base = proc_status(gw.pid)
        slots = SlotCounter(pool)
        sim = spawn([str(MEDIASIM), "--pool", pool, "--calls", str(args.calls), "--churn",
                     "--call-seconds", str(args.call_seconds), "--seconds", str(args.minutes * 60),
                     "--stagger", str(int(args.call_seconds * 1000 / args.calls)),
                     "--target", f"127.0.0.1:{port}", "--source", "tone"], stdout=subprocess.PIPE)
        t0, prev = time.monotonic(), scrape(admin)
        while sim.poll() is None:
            try:
                sim.wait(args.interval)
            except subprocess.TimeoutExpired:
                pass
            now, sink = scrape(admin), read_json(status) or {}
            s = dict(t_min=(time.monotonic() - t0) / 60, **proc_status(gw.pid),
                     slots_in_use=slots.in_use(), active_streams=now["smartstream_active_streams"],
                     server_streams_open=sink.get("opened", 0) - sink.get("ended", 0) - sink.get("reset", 0),
                     tick_p99_ms=p99_ms(prev, now, "smartstream_tick_lateness_seconds"),
                     hook_p99_ms=p99_ms(prev, now, "smartstream_hook_to_send_seconds"),
                     frames_sent=now["smartstream_frames_sent_total"])
            samples.append(s)
            prev = now
            print(json.dumps(s), flush=True)
        summary = [json.loads(x) for x in sim.stdout.read().splitlines() if x.startswith(b'{"summary"')][-1]
        # Every call has hung up: wait for the daemon to end their streams.
        wait_for(lambda: slots.in_use() == 0 and scrape(admin)["smartstream_active_streams"] == 0,
                 30, "slots or streams still open 30 s after the last call ended")
        time.sleep(2)
        end, sink, final = scrape(admin), read_json(status), proc_status(gw.pid)
        drops = {k: v for k, v in end.items() if k.startswith("smartstream_frames_dropped_total") and v}
        first = samples[:max(1, len(samples) // 4)]
        fds1, threads1 = max(s["fds"] for s in first), max(s["threads"] for s in first)
        rss2, rss4 = quarter_median(samples, "rss_kib", 1), quarter_median(samples, "rss_kib", 3)
        hook2, hook4 = quarter_median(samples, "hook_p99_ms", 1), quarter_median(samples, "hook_p99_ms", 3)
        checks = [
            ("no slot left in use", slots.in_use() == 0, f"{slots.in_use()}"),
            ("no stream left open at the daemon", end["smartstream_active_streams"] == 0,
             f"{end['smartstream_active_streams']:g}"),
            ("no stream left open at the AI server", sink["opened"] == sink["ended"] + sink["reset"],
             f"opened {sink['opened']}, ended {sink['ended']}, reset {sink['reset']}"),
            # against the first quarter under load: grpcio starts its threads and
            # epoll descriptors with its first channels, once
            ("file descriptors: none gained after the first quarter", final["fds"] <= fds1,
             f"{base['fds']} idle, {fds1} in the first quarter, {final['fds']} at the end"),
            ("threads: none gained after the first quarter", final["threads"] <= threads1,
             f"{base['threads']} idle, {threads1} in the first quarter, {final['threads']} at the end"),
            (f"resident memory flat (last quarter within {RSS_GROWTH_MAX:.0%} of the second)",
             rss4 <= rss2 * (1 + RSS_GROWTH_MAX), f"{rss2:.0f} -> {rss4:.0f} KiB"),
            (f"p99 hook-to-send not drifting (last quarter within {DRIFT_MAX_MS:g} ms of the second)",
             hook4 <= hook2 + DRIFT_MAX_MS, f"{hook2:g} -> {hook4:g} ms"),
            ("no frame dropped in the module's rings", summary["dropped"] == 0, f"{summary['dropped']}"),
            ("every frame written reached the AI server, but those counted as dropped",
             sink["frames"] + sum(drops.values()) >= summary["frames_written"],
             f"written {summary['frames_written']}, received {sink['frames']}, dropped {drops or 0}"),
        ]
        report = [f"# Soak: {args.calls} calls, {args.transport} transport, {args.minutes:g} min",
                  "", f"Calls of {args.call_seconds:g} s each, {summary['calls']} calls in all; "
                  f"streams reset by the AI server: every {args.reset_every or 'none'}-th "
                  f"({sink['reset']} resets). Sampled every {args.interval:g} s.", "",
                  "| check | result | measured |", "|---|---|---|",
                  *(f"| {name} | {'PASS' if ok else 'FAIL'} | {got} |" for name, ok, got in checks), "",
                  "| minute | RSS KiB | fds | threads | slots in use | streams | p99 tick ms | p99 hook→send ms |",
                  "|---|---|---|---|---|---|---|---|",
                  *(f"| {s['t_min']:.1f} | {s['rss_kib']} | {s['fds']} | {s['threads']} | "
                    f"{s['slots_in_use']} | {s['active_streams']:g} | ≤{s['tick_p99_ms']:g} | "
                    f"≤{s['hook_p99_ms']:g} |" for s in samples)]
        (args.out / f"{tag}.md").write_text("\n".join(report) + "\n")
        (args.out / f"{tag}.json").write_text(json.dumps(dict(samples=samples, summary=summary,
                                                              sink=sink, drops=drops), indent=1))
        print("\n".join(report))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        log.close()
        for path in (pool, status):
            if os.path.exists(path):
                os.unlink(path)
    return 0 if checks and all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
