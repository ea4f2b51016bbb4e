"""The shared-memory rings, per frame: what the module's write costs (C,
ss_stream_write, measured through ModuleStream.write) and what the daemon's
drain costs (Pool.drain over 1, 100 and 1000 active slots, one 640-byte
frame each, i.e. 20 ms of 16 kHz audio).

    python3 -m pytest benchmarks/bench_ring.py

Per-frame nanoseconds are in each benchmark's extra_info (--benchmark-json)
and in a table at the end of the run.

The write is called from Python, so its timing includes the call into
Cython and taking a buffer of the bytes. Two baselines bound that: a no-op
Python function with the same arguments, and ModuleStream.write of an empty
frame (the whole path but the 640-byte copy). The C cost of a frame is the
write minus the no-op; the copy alone is the write minus the empty write.
"""
import os
import time
import uuid

import pytest

from smartstream import _ring
from smartstream._ring import Batch, ModuleStream, Pool

FRAME = os.urandom(640)
N = 256                 # frames per timed round: 256 * 664 B fits the 256 KiB ring, no drops
RESULTS = []            # (name, ns per frame), printed at the end


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    cap = request.config.pluginmanager.get_plugin("capturemanager")
    if tr and cap and RESULTS:
        with cap.global_and_fixture_disabled():
            tr.write_line("")
            tr.write_sep("-", "ring cost per frame (median)")
            for name, ns in RESULTS:
                tr.write_line(f"  {name:<52} {ns:9.1f} ns")


def per_frame(benchmark, name, frames, **extra):
    """Median round time / frames, kept in extra_info and the final table."""
    if benchmark.stats is None:  # --benchmark-disable
        return None
    ns = benchmark.stats.stats.median * 1e9 / frames
    benchmark.extra_info["ns_per_frame"] = round(ns, 1)
    benchmark.extra_info.update(extra)
    RESULTS.append((name, ns))
    return ns


@pytest.fixture
def pool_path():
    path = f"/dev/shm/ssbench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield path
    if os.path.exists(path):
        os.unlink(path)


def one_call(path):
    pool = Pool.open(path, 1)
    ms = ModuleStream(pool, "bench", "127.0.0.1:1", 16000)
    pool.watch(ms.slot, ms.generation)
    return pool, ms


def noop(track, pcm, ts_ns=0):
    pass


def loop_ns(fn, frame, rounds=200):
    """Median ns per call of fn(0, frame, 1) in loops of N."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        for _ in range(N):
            fn(0, frame, 1)
        times.append((time.perf_counter_ns() - t) / N)
    return sorted(times)[len(times) // 2]


@pytest.mark.benchmark(group="write")
def test_write_frame(benchmark, pool_path):
    """ModuleStream.write of 640 bytes, the ring drained between rounds (untimed)."""
    pool, ms = one_call(pool_path)
    batch = Batch()
    write = ms.write

    def run():
        for _ in range(N):
            write(0, FRAME, 1)

    benchmark.pedantic(run, setup=lambda: pool.drain(batch) and None, rounds=400,
                       warmup_rounds=20)
    ns = per_frame(benchmark, "write 640 B (ModuleStream.write)", N)
    if ns is None:
        return
    noop_ns = loop_ns(noop, FRAME)
    empty = b""

    def empty_write(track, pcm, ts):
        write(track, empty, ts)
    pool.drain(batch)
    empty_ns = []
    for _ in range(100):  # keep the ring from filling: drain between loops
        empty_ns.append(loop_ns(write, empty, rounds=1))
        pool.drain(batch)
    empty_ns = sorted(empty_ns)[len(empty_ns) // 2]
    benchmark.extra_info.update(noop_python_call_ns=round(noop_ns, 1),
                                empty_write_ns=round(empty_ns, 1),
                                c_write_ns_estimate=round(ns - noop_ns, 1),
                                copy_640_ns=round(ns - empty_ns, 1))
    RESULTS.append(("  baseline: no-op Python call, same arguments", noop_ns))
    RESULTS.append(("  baseline: ModuleStream.write of 0 bytes", empty_ns))
    RESULTS.append(("  => C write cost (write - no-op)", ns - noop_ns))
    pool.close()


@pytest.mark.benchmark(group="write")
def test_write_frame_ring_full(benchmark, pool_path):
    """The same with the reader gone: every write first drops the oldest frame."""
    pool, ms = one_call(pool_path)
    write = ms.write
    for _ in range(2 * N):
        write(0, FRAME, 1)
    assert pool.counters(ms.slot)["up_in_dropped"] > 0

    def run():
        for _ in range(N):
            write(0, FRAME, 1)

    benchmark.pedantic(run, rounds=400, warmup_rounds=20)
    per_frame(benchmark, "write 640 B, ring full (drop oldest)", N)
    pool.close()


@pytest.fixture(params=[1, 100, 1000], ids=lambda n: f"{n}slots")
def active_pool(request, pool_path):
    n = request.param
    pool = Pool.open(pool_path, n)
    streams = []
    for i in range(n):
        ms = ModuleStream(pool, f"bench-{i}", "127.0.0.1:1", 16000)
        pool.watch(ms.slot, ms.generation)
        streams.append(ms)
    yield n, pool, streams
    pool.close()


def test_drain(benchmark, active_pool):
    """Pool.drain when every watched slot has one new 640-byte frame."""
    n, pool, streams = active_pool
    batch = Batch()
    writes = [ms.write for ms in streams]

    def one_frame_each():
        for w in writes:
            w(0, FRAME, 1)

    def run():
        assert pool.drain(batch) == n

    benchmark.group = "drain"
    benchmark.pedantic(run, setup=one_frame_each, rounds=max(200, 20000 // n), warmup_rounds=5)
    per_frame(benchmark, f"drain, {n} active slots", n, slots=n)


def test_drain_and_records(benchmark, active_pool):
    """The same, and the frames turned into Python tuples (batch.records())."""
    n, pool, streams = active_pool
    batch = Batch()
    writes = [ms.write for ms in streams]

    def one_frame_each():
        for w in writes:
            w(0, FRAME, 1)

    def run():
        pool.drain(batch)
        assert len(batch.records()) == n

    benchmark.group = "drain+records"
    benchmark.pedantic(run, setup=one_frame_each, rounds=max(200, 20000 // n), warmup_rounds=5)
    per_frame(benchmark, f"drain + records(), {n} active slots", n, slots=n)


def test_drain_idle(benchmark, active_pool):
    """Pool.drain when no watched slot has anything: the cost of a tick per slot."""
    n, pool, streams = active_pool
    batch = Batch()
    benchmark.group = "drain idle"
    benchmark.pedantic(lambda: pool.drain(batch), rounds=max(200, 20000 // n), warmup_rounds=5)
    per_frame(benchmark, f"drain, {n} idle slots (per slot)", n, slots=n)
