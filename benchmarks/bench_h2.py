"""Sender CPU per 20 ms audio frame: 200 streams on one connection, one
640-byte frame per stream per tick, then one flush. Three senders, one run:

  h2_c       H2Connection.send_audio from Cython (the gateway's path) + flush()
  h2_py      H2Connection.send_audio_py from Python + flush()
  grpcio     grpcio aio call.write(GatewayMessage) per frame, the reference transport's way

    python3 -m pytest benchmarks/bench_h2.py --benchmark-columns=mean,stddev,rounds

The timer is the process's CPU time (all its threads: grpcio's too), over
TICKS ticks a round, the event loop turned after each tick. The receivers run
in another process, so their CPU is not counted: a raw asyncio sink for h2
(it answers SETTINGS, keeps the connection window open and discards), a
grpc.aio server that reads and drops for grpcio. extra_info["us_per_frame"]
is the mean per frame. Ticks run back to back, not every 20 ms.
"""
import asyncio
import importlib
import itertools
import multiprocessing
import os
import sys
import time

import grpc
import pytest
import uvloop

from smartstream._h2 import H2Connection
from smartstream.v1 import smartstream_pb2 as pb
from smartstream.v1 import smartstream_pb2_grpc as pb_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STREAMS, TICKS, ROUNDS = 200, 10, 40
PCM = bytes(range(256)) * 2 + bytes(128)    # 640 bytes: 20 ms at 16 kHz
PATH = "/smartstream.v1.AIStream/Stream"

# The gateway's own per-tick loop, as a Cython caller of the C method would write it.
TICK_PYX = """
from libc.stdint cimport uint8_t
from smartstream._h2 cimport H2Connection, H2_OK

def tick(H2Connection conn, list sids, unsigned long long seq, const uint8_t[::1] pcm):
    cdef int sid
    for sid in sids:
        if conn.send_audio(sid, 1, seq, seq * 20000000, &pcm[0], pcm.shape[0], False) != H2_OK:
            raise RuntimeError(f"stream {sid} refused a frame")
    conn.flush()
"""


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


class Sink(asyncio.Protocol):
    """A cheap HTTP/2 receiver: SETTINGS, window updates, nothing else read."""

    def connection_made(self, transport):
        self.transport, self.first, self.unacked = transport, True, 0
        # 1000 streams, stream windows at the maximum, the connection window 1 GiB up.
        settings = ((3).to_bytes(2, "big") + (1000).to_bytes(4, "big")
                    + (4).to_bytes(2, "big") + (2**31 - 1).to_bytes(4, "big"))
        transport.write(frame(4, 0, 0, settings) + frame(8, 0, 0, (1 << 30).to_bytes(4, "big")))

    def data_received(self, data):
        if self.first:
            self.transport.write(frame(4, 1, 0))   # SETTINGS ACK
            self.first = False
        # Every byte read is credited, not only DATA payload: the window creeps
        # up by the frame overhead, far below 2^31 in one run.
        self.unacked += len(data)
        if self.unacked >= 64 << 20:
            self.transport.write(frame(8, 0, 0, self.unacked.to_bytes(4, "big")))
            self.unacked = 0


class Drop(pb_grpc.AIStreamServicer):
    async def Stream(self, request_iterator, context):
        async for _ in request_iterator:
            pass


async def serve(kind, ports):
    if kind == "raw":
        server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", 0)
        ports.put(server.sockets[0].getsockname()[1])
    else:
        server = grpc.aio.server()
        pb_grpc.add_AIStreamServicer_to_server(Drop(), server)
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
    await asyncio.Event().wait()


def run_server(kind, ports):
    uvloop.run(serve(kind, ports))


@pytest.fixture(scope="module")
def servers():
    ctx = multiprocessing.get_context("spawn")
    ports, procs = ctx.Queue(), {}
    for kind in ("raw", "grpc"):
        procs[kind] = ctx.Process(target=run_server, args=(kind, ports), daemon=True)
        procs[kind].start()
        procs[kind].port = ports.get(timeout=60)
    yield {k: p.port for k, p in procs.items()}
    for p in procs.values():
        p.terminate()
        p.join()


@pytest.fixture(scope="module")
def cython_tick(tmp_path_factory):
    """TICK_PYX built against smartstream/_h2.pxd, as another module of the package would be."""
    from Cython.Build import cythonize
    from setuptools import Distribution

    d = tmp_path_factory.mktemp("tick")
    (d / "h2_bench_tick.pyx").write_text(TICK_PYX)
    cwd = os.getcwd()
    os.chdir(d)
    try:
        dist = Distribution({"ext_modules": cythonize(["h2_bench_tick.pyx"], include_path=[ROOT],
                                                      language_level=3, quiet=True)})
        dist.get_command_obj("build_ext").inplace = True
        dist.run_command("build_ext")
    finally:
        os.chdir(cwd)
    sys.path.insert(0, str(d))
    return importlib.import_module("h2_bench_tick").tick


class Quiet:
    """The connection's handler: nothing is expected but the end."""

    def __init__(self):
        self.closed, self.lost = [], []

    def on_message(self, sid, data):
        pass

    def on_stream_closed(self, sid, status, message):
        self.closed.append((sid, status, message))

    def on_connection_lost(self, reason):
        self.lost.append(reason)


@pytest.fixture
def loop():
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


def measure(benchmark, loop, ticks):
    """ticks(): TICKS ticks; CPU time of a round, the loop turned after each tick."""
    def round_():
        for _ in range(TICKS):
            ticks()
            loop.run_until_complete(asyncio.sleep(0))
    benchmark.pedantic(round_, rounds=ROUNDS, warmup_rounds=2)
    benchmark.extra_info["us_per_frame"] = benchmark.stats.stats.mean / (TICKS * STREAMS) * 1e6


async def h2_connection(port):
    handler = Quiet()
    conn = H2Connection(f"127.0.0.1:{port}", "http", handler)
    await asyncio.get_running_loop().create_connection(lambda: conn, "127.0.0.1", port)
    while conn.available_streams < STREAMS:   # before the server's SETTINGS: 100
        await asyncio.sleep(0.001)
    return conn, handler, [conn.open_stream(PATH, []) for _ in range(STREAMS)]


def check_and_close(conn, handler, sids):
    """Every frame left: nothing failed, nothing stayed queued."""
    assert not handler.closed and not handler.lost and conn.open_streams == STREAMS
    assert max(conn.stream_buffered(s) for s in sids) < 64 << 10
    conn.close()


@pytest.mark.benchmark(group="frame", timer=time.process_time)
def test_h2_c(benchmark, servers, loop, cython_tick):
    conn, handler, sids = loop.run_until_complete(h2_connection(servers["raw"]))
    seq = itertools.count(1)
    measure(benchmark, loop, lambda: cython_tick(conn, sids, next(seq), PCM))
    check_and_close(conn, handler, sids)


@pytest.mark.benchmark(group="frame", timer=time.process_time)
def test_h2_py(benchmark, servers, loop):
    conn, handler, sids = loop.run_until_complete(h2_connection(servers["raw"]))
    seq = itertools.count(1)

    def tick():
        n = next(seq)
        for sid in sids:
            conn.send_audio_py(sid, 1, n, n * 20_000_000, PCM)
        conn.flush()
    measure(benchmark, loop, tick)
    check_and_close(conn, handler, sids)


@pytest.mark.benchmark(group="frame", timer=time.process_time)
def test_grpcio(benchmark, servers, loop):
    async def open_calls():
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{servers['grpc']}")
        stub = pb_grpc.AIStreamStub(channel)
        calls = [stub.Stream() for _ in range(STREAMS)]
        await channel.channel_ready()
        return channel, calls

    async def tick(n):
        await asyncio.gather(*(call.write(pb.GatewayMessage(audio=pb.AudioFrame(
            track=1, sequence=n, capture_ns=n * 20_000_000, pcm=PCM))) for call in calls))

    channel, calls = loop.run_until_complete(open_calls())
    seq = itertools.count(1)
    measure(benchmark, loop, lambda: loop.run_until_complete(tick(next(seq))))
    loop.run_until_complete(channel.close())
