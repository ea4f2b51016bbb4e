"""Sub-ticks (Gateway.sub_tick: Router.pump between ticks), in process over a
real pool (the module side through ModuleStream, csrc/ss_stream.c) and a real
grpc.aio AI server. The test drives ticks and sub-ticks itself, so it decides
which of them takes each frame: every frame reaches the server exactly once,
bit-exact and in order; a sub-tick's frames need no tick to get there; a
stream resumed after an outage of the server goes on where it stopped."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from smartstream import _ring
from smartstream.config import Config
from smartstream.gateway import Gateway
from smartstream.v1 import smartstream_pb2 as pb

from .aiserver import AIServer

RATE = 16000
FRAME = RATE // 50 * 2   # bytes in 20 ms
UUID = "subtick"
# Frames the module writes before each step, and the step: "sub" = one
# sub-tick, "sub2" = two in a row (the second finds nothing), "tick" = a tick.
SCRIPT = [(1, "sub"), (0, "sub"), (2, "sub2"), (1, "tick"), (3, "sub"), (1, "sub2"),
          (0, "tick"), (4, "sub"), (1, "sub"), (2, "tick")] * 4 + [(2, "sub")]


def noise(n_frames: int, seed: int) -> list[bytes]:
    pcm = np.random.default_rng(seed).integers(-30000, 30000, n_frames * FRAME // 2, dtype="<i2")
    pcm[pcm == 0] = 1
    return [pcm[i * FRAME // 2:(i + 1) * FRAME // 2].tobytes() for i in range(n_frames)]


async def until(gw: Gateway | None, predicate, what: str) -> None:
    """Let the loop run (ticking gw if given) until predicate() holds."""
    for _ in range(1000):
        if predicate():
            return
        if gw is not None:
            gw.tick()
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


@pytest.fixture(params=[False, True], ids=["no-ack", "ack"])
async def rig(request, pool):
    """(gateway, module side, server): the gateway not started, so nothing
    ticks unless the test says so."""
    server = AIServer(ack=request.param)
    port = await server.start()
    gw = Gateway(Config(pool_path=pool, pool_slots=4, drain_period_ms=2, retry_initial_ms=20))
    module = _ring.ModuleStream(_ring.Pool.attach(pool), UUID, f"127.0.0.1:{port}", RATE)
    yield gw, module, server
    module.close()
    gw.tick()
    await gw.stop()
    await server.stop(0)


def frames_of(server: AIServer) -> list[pb.AudioFrame]:
    return server.all_frames(UUID)


async def play(gw, module, server, frames: list[bytes], first_seq: int, live: bool) -> None:
    """SCRIPT with these frames. live: the stream is up; each step's frames
    must then reach the server before the next step, with no tick after them."""
    at = 0
    for count, step in SCRIPT:
        for pcm in frames[at:at + count]:
            module.write(0, pcm)
        at += count
        if step == "tick":
            gw.tick()
        else:
            gw.sub_tick()
            if live:   # written to the socket by the sub-tick itself, not left for a tick
                stream = gw.calls[module.slot].stream
                assert stream.conn.h2.stream_buffered(stream.sid) == 0
            if step == "sub2":
                gw.sub_tick()
        if live and at:
            last = first_seq + at - 1
            await until(None, lambda: any(f.sequence == last for f in frames_of(server)),
                        f"frame {last} after a {step}")
    assert at == len(frames)


def script_frames() -> int:
    return sum(count for count, _ in SCRIPT)


def check_exact(got: list[pb.AudioFrame], sent: list[bytes]) -> None:
    assert [f.sequence for f in got] == list(range(len(sent)))
    assert [f.pcm for f in got] == sent
    assert all(f.track == pb.TRACK_INBOUND and not f.synthesized for f in got)


async def test_each_frame_leaves_once_bit_exact_in_order(rig):
    gw, module, server = rig
    await until(gw, lambda: server.streams.get(UUID), "the stream started")
    sent = noise(script_frames(), seed=5)
    await play(gw, module, server, sent, 0, live=True)
    gw.tick()
    await until(gw, lambda: len(frames_of(server)) >= len(sent), "every frame")
    for _ in range(3):   # nothing is left to send twice
        gw.sub_tick()
        gw.tick()
        await asyncio.sleep(0.02)
    check_exact(frames_of(server), sent)
    assert len(server.streams[UUID]) == 1
    # The sub-ticks' counts reach the metrics through the next tick, which
    # here finds nothing to drain itself.
    assert gw.metrics.registry.get_sample_value("smartstream_frames_sent_total") == len(sent)
    assert gw.router.frames_sent(module.slot) == len(sent)
    assert gw.router.stale == 0   # no frame was offered twice


async def test_resume_after_an_outage_goes_on_where_it_stopped(rig):
    gw, module, server = rig
    await until(gw, lambda: server.streams.get(UUID), "the stream started")
    before, during, after = (noise(script_frames(), seed=s) for s in (6, 7, 8))
    await play(gw, module, server, before, 0, live=True)
    port = server.port
    await server.stop(0)
    await until(gw, lambda: server.streams[UUID][0].done.is_set(), "the first stream ended")
    # Frames while the server is down: the sub-ticks keep them in the window.
    await play(gw, module, server, during, len(before), live=False)
    again = AIServer(ack=True, streams=server.streams)
    await again.start(port)
    try:
        await until(gw, lambda: len(server.streams[UUID]) == 2, "the resumed stream")
        await play(gw, module, again, after, len(before) + len(during), live=True)
        sent = before + during + after
        await until(gw, lambda: max(f.sequence for f in again.all_frames(UUID)) == len(sent) - 1,
                    "the last frame")
    finally:
        await again.stop(0)
    first, second = server.streams[UUID]
    check_exact(first.frames(), before[:len(first.frames())])
    # The second stream starts with the oldest frame the window still held
    # (for an acking server: the first it had not acknowledged), the outage's
    # frames among them, and goes on bit-exact, each frame once, in order.
    start = second.start.next_sequence
    assert second.start.resumed and start <= len(before)
    if server.ack:
        assert start == first.last_ack[pb.TRACK_INBOUND] + 1
    got = second.frames()
    assert [f.sequence for f in got] == list(range(start, len(sent)))
    assert [f.pcm for f in got] == sent[start:]
    assert not second.gaps()
