"""The daemon killed with SIGKILL (or stopped with SIGTERM) mid-call and
started again: the calls never notice (the simulator's writes never block),
the new daemon re-attaches the pool, finds the live slots and resumes their
streams exactly where the old one stopped sending (the rings keep that
position), and the frames written while it was down reach the AI server."""
from __future__ import annotations

import asyncio
import signal

import pytest

from smartstream.v1 import smartstream_pb2 as pb

from .aiserver import AIServer
from .harness import Daemon, Sim

pytestmark = pytest.mark.usefixtures("mediasim")
CALLS, SECONDS = 3, 5
# A window longer than a slow restart (grpcio's import): frames the new daemon
# drains while its stream connects are not pushed out of it.
ARGS = ("--resume-bound-ms", "5000", "--transport")


@pytest.fixture(params=[False, True], ids=["no-ack", "ack"])
async def acking_or_not(request):
    """The AI server, acknowledging every frame or never (the daemon that
    restarts knows nothing of the old one's acks: the rings' position rules)."""
    s = AIServer(ack=request.param)
    await s.start()
    yield s
    await s.stop(0)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
@pytest.mark.parametrize("transport", ["fast", "grpcio"])
async def test_restart_resumes_every_call_exactly(transport, sig, pool, tmp_path, acking_or_not):
    server = acking_or_not
    first = Daemon(pool, tmp_path, *ARGS, transport).start()
    second = None
    try:
        sim = await Sim(pool, "--calls", str(CALLS), "--seconds", str(SECONDS), "--source",
                        "pattern", "--target", f"127.0.0.1:{server.port}",
                        "--uuid-prefix", "rs").start()
        for _ in range(CALLS):
            await asyncio.wait_for(server.started.get(), 10)
        await asyncio.sleep(1.0)
        first.stop(sig)
        await asyncio.sleep(0.8)                     # the calls go on, frames pile up in the rings
        second = Daemon(pool, tmp_path, *ARGS, transport).start()
        summary = await sim.wait()
        await asyncio.sleep(0.5)

        # FreeSWITCH's side never noticed: every frame written, none dropped by a ring.
        assert summary["frames_written"] == CALLS * SECONDS * 50
        assert summary["dropped"] == 0
        assert "re-attached" in second.log()
        for i in range(CALLS):
            recs = server.streams[f"rs-{i:04d}"]
            assert len(recs) == 2 and recs[1].start.resumed and not recs[0].start.resumed
            await asyncio.wait_for(recs[1].done.wait(), 5)
            assert recs[1].messages[-1].end.reason == pb.StreamEnd.REASON_HANGUP
            before = [f.sequence for f in recs[0].frames()]
            after = [f.sequence for f in recs[1].frames()]
            gaps = {s for g in recs[1].gaps() for s in range(g.first_sequence, g.first_sequence + g.count)}
            # The new stream starts right after the last frame sent (or with a
            # Gap for frames the old daemon took and never sent), and goes on
            # to the last frame with nothing twice.
            assert recs[1].start.next_sequence == min(gaps | {after[0]})
            assert before == list(range(len(before))) and not gaps & set(before)
            assert sorted(before + after + sorted(gaps)) == list(range(SECONDS * 50)), (i, gaps)
            assert after == sorted(after)
            if sig == signal.SIGTERM:   # a clean stop sends everything it took
                assert recs[1].start.next_sequence == len(before) and not gaps
    finally:
        first.cleanup()
        if second:
            second.cleanup()


async def test_daemon_down_longer_than_the_ring_announces_exactly_what_it_lost(pool, tmp_path, server):
    # At 48 kHz a ring holds ~2.7 s: down for 4 s, the module drops the oldest
    # frames, and the new daemon's stream starts with a Gap naming exactly them.
    first = Daemon(pool, tmp_path, *ARGS, "fast").start()
    second = None
    try:
        sim = await Sim(pool, "--calls", "1", "--seconds", "7", "--rate", "48000", "--source",
                        "tone", "--target", f"127.0.0.1:{server.port}", "--uuid-prefix", "ov").start()
        await asyncio.wait_for(server.started.get(), 10)
        await asyncio.sleep(1.0)
        first.stop(signal.SIGKILL)
        await asyncio.sleep(4.0)
        second = Daemon(pool, tmp_path, *ARGS, "fast").start()
        summary = await sim.wait()
        recs = server.streams["ov-0000"]
        await asyncio.wait_for(recs[1].done.wait(), 5)
    finally:
        first.cleanup()
        if second:
            second.cleanup()
    assert summary["dropped"] > 0
    before, after = [f.sequence for f in recs[0].frames()], [f.sequence for f in recs[1].frames()]
    (gap,) = recs[1].gaps()
    assert gap.reason == pb.Gap.REASON_RING_OVERRUN
    assert recs[1].start.next_sequence == gap.first_sequence == len(before)
    assert after[0] == gap.first_sequence + gap.count and after == list(range(after[0], 7 * 50))
    # The module dropped at least these (it may have dropped some the old daemon had sent).
    assert gap.count >= summary["dropped"]
    assert recs[1].messages[-1].end.frames_lost == gap.count
