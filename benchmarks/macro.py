"""Whole-system comparison: N simulated calls (16 kHz, or --rate) in real time through
three gateways, measured the same way, in one invocation:

  fast    SmartStream, `smartstream run --transport fast`
  grpcio  SmartStream, `smartstream run --transport grpcio`
  ws      the bolt-on baseline it replaces: benchmarks/ws_baseline.py,
          base64 + JSON (Twilio Media Streams) over one WebSocket per call

    python3 benchmarks/macro.py --calls 200,1000 --seconds 20 [--search]

For each N, the systems run one after another (interleaved, so a drift of
the machine hits all three): a sink (benchmarks/sinks.py), the gateway, then
csrc/build/mediasim --source tone --spread for --seconds, its N calls starting
1 ms apart or evenly over the first second (calls arrive, they do not all
start in one 20 ms tick; that burst is a set-up cost, not the per-frame cost
measured here), each writing its frames on its own 1 ms phase of the 20 ms
period, as FreeSWITCH's channels do on their own timers. The gateway is pinned to
CPU 0; sink, mediasim and this script to CPU 1, so the gateway has a core of
its own. Measured:

  CPU/frame   utime+stime of the gateway's processes (all threads), from
              mediasim's start to the sink having every frame, over frames received
  tick late   p50/p99 of how late the 20 ms tick started, from 1 s after
              the last call started (past the set-up) to mediasim's end: the
              daemon's smartstream_tick_lateness_seconds histogram (scraped at
              both ends), the baseline's own ticks put in the same buckets; so
              a value is the upper bound of its bucket (1, 2, 5, 10 ms ...)
  hook->AI    p50/p99 of the sink's receive time minus the frame's capture
              time (CLOCK_MONOTONIC, same host), every 16th frame
  lost        frames mediasim wrote minus frames the sink received
  RSS/call    growth of the gateway's resident memory (peak during the run
              minus before it) over N
  pool/call   growth of the pool's allocated memory (its file's blocks) over N:
              the rings of the live calls
  anon/call   growth of the gateway's private memory (RssAnon) over N: RSS/call
              without the pool pages it maps; pool + anon is what a call costs
  sink core   the sink's CPU over the run, in % of one core: it must stay
              well below 100 for the gateway to be what is measured

--search then finds, per system, the largest N whose p99 tick lateness is
at most 5 ms with no frame lost: N doubles from 50 while it passes, then
--bisect steps between the last pass and the first failure, --search-seconds
each, N at most --search-max: at most 3 x (7 + 3) runs of about 12 s, 6 minutes.

Writes OUT/latest.md (the tables), OUT/cpu_per_frame.png and
OUT/tick_lateness_p99.png (if matplotlib is installed), OUT/raw/latest.json
(every run) and, for a run whose processes wrote anything, OUT/raw/<run>.log.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sinks import read_latency   # benchmarks/ is this script's directory

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MEDIASIM = REPO / "csrc" / "build" / "mediasim"
SYSTEMS = ("fast", "grpcio", "ws")
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)   # smartstream.metrics
SETTLE = 1.0   # s after the last call started before tick lateness counts
TICK_HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
TWO_CORES = len(os.sched_getaffinity(0)) >= 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if TWO_CORES else cmd


def family(pid: int) -> list[int]:
    """pid and all its descendants."""
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parents.items() if pp == p]
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid's processes; a process's counts include all its threads."""
    total = 0
    for p in family(pid):
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK_HZ


def rss_anon_bytes(pid: int) -> int:
    total = 0
    for p in family(pid):
        with open(f"/proc/{p}/status") as f:
            total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon:"))
    return total


def rss_bytes(pid: int) -> int:
    total = 0
    for p in family(pid):
        with open(f"/proc/{p}/statm") as f:
            total += int(f.read().split()[1]) * PAGE
    return total


def scrape(admin: str) -> dict[str, float]:
    """The daemon's /metrics as {sample line name with labels: value}."""
    host, port = admin.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in body.splitlines()
                                     if line and not line.startswith("#"))}


def scrape_if_up(admin: str) -> dict[str, float] | None:
    """/metrics, or None if the daemon's loop is too busy to answer it."""
    try:
        return scrape(admin)
    except OSError:   # TimeoutError included
        return None


def bucket_counts(before: dict, after: dict, name: str) -> list[float]:
    """A scraped histogram's cumulative bucket counts (BUCKETS, then +Inf)
    between two scrapes."""
    key = name + "_bucket{le=\"%s\"}"
    return [after.get(k, 0) - before.get(k, 0) for k in [key % le for le in BUCKETS] + [key % "+Inf"]]


def bucket_quantile(counts: list[float], q: float) -> float:
    """Upper bound (s) of the bucket holding quantile q of cumulative counts; inf past the last."""
    total = counts[-1]
    for le, c in zip(BUCKETS, counts):
        if total and c >= q * total:
            return le
    return float("inf") if total else 0.0


def pct(values: list[int], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_one(system: str, n: int, seconds: float, work: Path, rate: int = 16000) -> dict:
    """One system, N calls, one run; everything it started is stopped and removed."""
    tag = f"{system}-{n}-{uuid.uuid4().hex[:6]}"
    pool, status, summary = f"/dev/shm/ssbench-{tag}.pool", work / f"sink-{tag}.json", work / f"ws-{tag}.json"
    sink_port, admin = free_port(), f"127.0.0.1:{free_port()}"
    log = open(work / f"{tag}.log", "wb")
    procs: list[subprocess.Popen] = []

    def spawn(cpu, cmd, **kw):
        p = subprocess.Popen(pinned(cpu, cmd), stdout=kw.pop("stdout", log), stderr=log, cwd=REPO, **kw)
        procs.append(p)
        return p

    try:
        sink = spawn(1, [sys.executable, str(HERE / "sinks.py"), "ws" if system == "ws" else "h2",
                         "--port", str(sink_port), "--status", str(status)])
        wait_for(status.exists, 10, "sink did not start")
        slots = str(max(16, n))
        if system == "ws":
            gw = spawn(0, [sys.executable, str(HERE / "ws_baseline.py"), "--pool-path", pool,
                           "--pool-slots", slots, "--summary", str(summary)])
        else:
            gw = spawn(0, [sys.executable, "-m", "smartstream.cli", "run", "--pool-path", pool,
                           "--pool-slots", slots, "--transport", system, "--log-level", "WARNING"],
                       env={**os.environ, "SMARTSTREAM_ADMIN_LISTEN": admin})
        wait_for(lambda: os.path.exists(pool) and gw.poll() is None and heartbeat(pool), 20,
                 f"{system} gateway did not start")
        time.sleep(0.5)   # past start-up's imports
        rss0, cpu0, t0 = rss_bytes(gw.pid), cpu_seconds(gw.pid), time.monotonic_ns()
        anon0, pool0 = rss_anon_bytes(gw.pid), os.stat(pool).st_blocks * 512
        sink0 = read_json(status)
        stagger_ms = max(1, 1000 // n)
        sim = spawn(1, [str(MEDIASIM), "--pool", pool, "--calls", str(n), "--seconds", str(seconds),
                        "--source", "tone", "--rate", str(rate), "--target", f"127.0.0.1:{sink_port}",
                        "--wait-daemon", "10", "--stagger", str(stagger_ms), "--spread"],
                    stdout=subprocess.PIPE)
        rss_peak, anon_peak, pool_peak = rss0, anon0, pool0
        # Tick lateness counts from SETTLE after the last call started: opening
        # N streams is a one-off set-up that would otherwise be most of a short
        # run's p99.
        time.sleep(n * stagger_ms / 1000 + SETTLE)
        before, t_late = scrape_if_up(admin) if system != "ws" else {}, time.monotonic_ns()
        while sim.poll() is None:
            rss_peak = max(rss_peak, rss_bytes(gw.pid))
            anon_peak = max(anon_peak, rss_anon_bytes(gw.pid))
            pool_peak = max(pool_peak, os.stat(pool).st_blocks * 512)
            time.sleep(0.25)
        sim_summary = [json.loads(line) for line in sim.stdout.read().splitlines()
                       if line.startswith(b'{"summary"')][-1]
        t1 = time.monotonic_ns()
        written = sim_summary["frames_written"]
        # The tail: the gateway sees the hang-ups and sends its last frames.
        deadline, last = time.monotonic() + 10, None
        while time.monotonic() < deadline:
            st = read_json(status) or {}
            if st.get("frames", 0) >= written:
                break
            if st.get("frames") != last:
                last, deadline = st.get("frames"), min(deadline + 2, time.monotonic() + 3)
            time.sleep(0.25)
        cpu1, t2 = cpu_seconds(gw.pid), time.monotonic_ns()
        after = scrape_if_up(admin) if system != "ws" else {}
        gw.send_signal(signal.SIGTERM)
        gw.wait(20)
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)
        st = read_json(status)
        if system == "ws":
            ticks = json.loads(summary.read_text())["ticks"]
            late = [us / 1e6 for at, us in ticks if t_late <= at <= t1]
            counts = [sum(x <= le for x in late) for le in BUCKETS] + [len(late)]
        else:
            # An endpoint that did not answer: the loop could not keep up.
            counts = (bucket_counts(before, after, "smartstream_tick_lateness_seconds")
                      if before and after else None)
        frames, lat = st["frames"], read_latency(status, 0, st["latency_n"])
        window = (t2 - t0) / 1e9   # the CPU window: the run and its tail
        return dict(
            system=system, calls=n, rate=rate, seconds=seconds, frames_written=written, frames_received=frames,
            lost=written - frames, ring_dropped=sim_summary["dropped"], sim_late_ticks=sim_summary["late_ticks"],
            cpu_us_per_frame=(cpu1 - cpu0) / max(frames, 1) * 1e6,
            gateway_core_pct=(cpu1 - cpu0) / window * 100,
            tick_p50_ms=bucket_quantile(counts, 0.5) * 1e3 if counts else float("inf"),
            tick_p99_ms=bucket_quantile(counts, 0.99) * 1e3 if counts else float("inf"),
            hook_p50_ms=pct(lat, 0.5) / 1e3, hook_p99_ms=pct(lat, 0.99) / 1e3,
            rss_kib_per_call=(rss_peak - rss0) / n / 1024,
            pool_kib_per_call=(pool_peak - pool0) / n / 1024,
            anon_kib_per_call=(anon_peak - anon0) / n / 1024,
            sink_core_pct=(st["cpu_s"] - sink0["cpu_s"]) / window * 100)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        log.close()
        logfile = Path(log.name)
        for path in (pool, status, summary) + ((logfile,) if not logfile.stat().st_size else ()):
            if os.path.exists(path):
                os.unlink(path)


def heartbeat(pool: str) -> bool:
    from smartstream import _ring
    try:
        return _ring.Pool.attach(pool).daemon_alive()
    except _ring.PoolError:
        return False


def passes(r: dict) -> bool:
    return r["tick_p99_ms"] <= 5 and r["lost"] == 0


def search(system: str, args, work: Path, runs: list[dict]) -> int:
    """Largest N that passes: doubling from 50, then bisection."""
    def ok(n):
        r = run_one(system, n, args.search_seconds, work, args.rate)
        r["search"] = True
        runs.append(r)
        print(f"  search {system} N={n}: p99 tick {r['tick_p99_ms']:g} ms, lost {r['lost']}"
              f" -> {'pass' if passes(r) else 'fail'}", flush=True)
        return passes(r)

    good, bad = 0, None
    n = 50
    while n <= args.search_max:
        if not ok(n):
            bad = n
            break
        good, n = n, n * 2
    for _ in range(args.bisect if bad else 0):
        mid = (good + bad) // 2
        if mid in (good, bad):
            break
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def fmt(x: float, digits: int = 2) -> str:
    return "∞" if x == float("inf") else f"{x:.{digits}f}"


def table(runs: list[dict]) -> str:
    base = {r["calls"]: r for r in runs if r["system"] == "ws"}
    lines = ["| system | N | CPU µs/frame | CPU vs ws | gateway core % | tick late p50 / p99 ms | "
             "hook→AI p50 / p99 ms | p99 vs ws | frames written | received | lost | RSS KiB/call | "
             "pool + anon KiB/call | sink core % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        b = base.get(r["calls"])
        cpu_x = f"{b['cpu_us_per_frame'] / r['cpu_us_per_frame']:.2f}× less" if b else "-"
        lat_x = f"{b['hook_p99_ms'] / r['hook_p99_ms']:.2f}× lower" if b and r["hook_p99_ms"] > 0 else "-"
        if r["system"] == "ws":
            cpu_x = lat_x = "1"
        lines.append(
            f"| {r['system']} | {r['calls']} | {fmt(r['cpu_us_per_frame'], 1)} | {cpu_x} | "
            f"{fmt(r['gateway_core_pct'], 0)} | ≤{fmt(r['tick_p50_ms'], 0)} / ≤{fmt(r['tick_p99_ms'], 0)} | "
            f"{fmt(r['hook_p50_ms'])} / {fmt(r['hook_p99_ms'])} | {lat_x} | {r['frames_written']} | "
            f"{r['frames_received']} | {r['lost']} | {fmt(r['rss_kib_per_call'], 1)} | "
            f"{fmt(r['pool_kib_per_call'], 0)} + {fmt(r['anon_kib_per_call'], 0)} | {fmt(r['sink_core_pct'], 0)} |")
    return "\n".join(lines)


def plot(runs: list[dict], out: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plots: pip install matplotlib", file=sys.stderr)
        return
    for key, ylabel, name in (("cpu_us_per_frame", "gateway CPU µs per frame", "cpu_per_frame.png"),
                              ("tick_p99_ms", "p99 tick lateness, ms (bucket bound)", "tick_lateness_p99.png"),
                              ("hook_p99_ms", "p99 hook → AI server, ms", "hook_to_ai_p99.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for system in SYSTEMS:
            pts = sorted((r["calls"], r[key]) for r in runs if r["system"] == system)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=system)
        if key != "cpu_us_per_frame":
            ax.set_yscale("log")   # the saturated systems are orders of magnitude off
        ax.set_xlabel("concurrent calls (N)")
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="50,200", help="comma-separated N (50,200)")
    ap.add_argument("--seconds", type=float, default=10, help="run length per system and N (10)")
    ap.add_argument("--rate", type=int, default=16000, help="channel rate of the calls (16000)")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--search", action="store_true", help="also find each system's maximum N")
    ap.add_argument("--search-seconds", type=float, default=8)
    ap.add_argument("--search-max", type=int, default=3200)
    ap.add_argument("--bisect", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if TWO_CORES:
        os.sched_setaffinity(0, {1})   # this script stays off the gateway's core
    systems = args.systems.split(",")
    (args.out / "raw").mkdir(parents=True, exist_ok=True)
    work = args.out / "raw"
    runs = []
    for n in (int(x) for x in args.calls.split(",") if x):
        for system in systems:
            print(f"{system} N={n} {args.seconds:g} s ...", flush=True)
            runs.append(run_one(system, n, args.seconds, work, args.rate))
    doc = [f"{len(runs) and runs[0]['seconds']:g} s per run, {args.rate} Hz calls; {os.cpu_count()} CPUs, "
           f"gateway on CPU 0, sink + mediasim on CPU 1.\n", table(runs)]
    search_runs = []
    write(args.out, doc, runs, search_runs)   # kept even if the search is cut short
    if args.search:
        found = {s: search(s, args, work, search_runs) for s in systems}
        doc += [f"\nMaximum concurrent calls with p99 tick lateness ≤ 5 ms and no frame lost "
                f"({args.search_seconds:g} s runs, N ≤ {args.search_max}):\n",
                "| system | max N |", "|---|---|", *(f"| {s} | {n} |" for s, n in found.items())]
        write(args.out, doc, runs, search_runs)
    print("\n".join(doc))


def write(out: Path, doc: list[str], runs: list[dict], search_runs: list[dict]) -> None:
    (out / "latest.md").write_text("\n".join(doc) + "\n")
    (out / "raw" / "latest.json").write_text(json.dumps(runs + search_runs, indent=1))
    plot(runs, out)


if __name__ == "__main__":
    main()
