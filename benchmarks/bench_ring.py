"""The shared-memory rings, per frame: what the module's write costs (C,
ss_stream_write) and what the daemon's drain costs (Pool.drain over 1, 100
and 1000 active slots, one 640-byte frame each, i.e. 20 ms of 16 kHz audio).

    python3 -m pytest benchmarks/bench_ring.py

Per-frame nanoseconds are in each benchmark's extra_info (--benchmark-json)
and in a table at the end of the run.

The write is measured twice. In C: a small driver compiled here from the
csrc/ sources calls ss_stream_write N times in a loop, called through ctypes
once per round (one ctypes call per N frames). And from Python, through
ModuleStream.write, whose timing includes the call into Cython and taking a
buffer of the bytes; two baselines bound that: a no-op Python function with
the same arguments, and ModuleStream.write of an empty frame (the whole path
but the 640-byte copy).
"""
import ctypes
import os
import subprocess
import time
import uuid

import pytest

from smartstream._ring import Batch, ModuleStream, Pool

FRAME = os.urandom(640)
N = 128                 # frames per timed round: 128 * 664 B fit a 16 kHz call's 128 KiB ring, no drops
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


CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")
DRIVER = r"""
#include <string.h>
#include "ss_daemon.h"
#include "ss_stream.h"
static ss_pool pool;
static ss_stream st;
static int16_t pcm[320];
static uint8_t out[256 * 1024];
int bench_open(const char *path) {
    char err[256]; int re;
    ss_call c = {.uuid = "bench", .target = "127.0.0.1:1", .channel_rate = 16000,
                 .tracks = SS_TRACKS_MASK_IN};
    memset(pcm, 0x5a, sizeof pcm);
    if (ss_daemon_open(path, 1, 0600, &pool, &re, err, sizeof err)) return -1;
    return ss_stream_open(&pool, &c, &st, err, sizeof err);
}
void bench_write(int n) {                      /* the module's hot path */
    for (int i = 0; i < n; i++)
        ss_stream_write(&st, SS_TRACK_IN, (uint64_t)i, pcm, 320);
}
void bench_drain(void) {
    uint32_t nrecs; uint64_t lost;
    while (ss_rec_drain(&st.rings.up[SS_TRACK_IN], out, sizeof out, 0xffffffffu, &nrecs, &lost) > 0)
        ;
}
unsigned long long bench_dropped(void) { return st.slot->up[SS_TRACK_IN].dropped; }
void bench_close(void) { ss_pool_detach(&pool); }
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = tmp_path_factory.mktemp("driver")
    src, lib = d / "driver.c", d / "libdriver.so"
    src.write_text(DRIVER)
    sources = [os.path.join(CSRC, f) for f in ("ss_ring.c", "ss_pool.c", "ss_stream.c", "ss_daemon.c")]
    subprocess.run(["cc", "-std=c11", "-O2", "-shared", "-fPIC", "-I", CSRC, "-o", str(lib),
                    str(src), *sources], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.bench_open.argtypes = [ctypes.c_char_p]
    dll.bench_write.argtypes = [ctypes.c_int]
    dll.bench_dropped.restype = ctypes.c_ulonglong
    return dll


@pytest.mark.benchmark(group="write")
@pytest.mark.parametrize("ring", ["drained", "full"])
def test_c_write_frame(benchmark, driver, pool_path, ring):
    """ss_stream_write of 640 bytes in a C loop; "full": every write drops the oldest."""
    assert driver.bench_open(pool_path.encode()) == 0
    try:
        if ring == "full":
            driver.bench_write(2 * N)
            assert driver.bench_dropped() > 0
            benchmark.pedantic(driver.bench_write, args=(N,), rounds=400, warmup_rounds=20)
        else:
            benchmark.pedantic(driver.bench_write, args=(N,), setup=driver.bench_drain,
                               rounds=400, warmup_rounds=20)
            assert driver.bench_dropped() == 0
        per_frame(benchmark, f"C ss_stream_write 640 B, ring {ring}", N)
    finally:
        driver.bench_close()


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
    RESULTS.append(("  => write - no-op (C + Cython buffer handling)", ns - noop_ns))
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
