"""Calls that start while the daemon is down (uuid_ai_stream start with
start-without-daemon, here the simulator's --start-without-daemon): their
rings keep the audio as a live stream's do, and the daemon that comes back
opens each as a normal new stream (resumed=false, next_sequence 0) with the
audio from the beginning; what the ring could not hold is one Gap naming
exactly the frames it dropped."""
from __future__ import annotations

import array
import asyncio
import signal

import pytest

from smartstream import _ring
from smartstream.v1 import smartstream_pb2 as pb

from .harness import Daemon, Sim

pytestmark = pytest.mark.usefixtures("mediasim")
# The default 2 s resume window: until a call's first stream is up its audio
# stays in the ring (7.9 s of 16 kHz), so a longer wait loses nothing.


def pattern(i: int, s: int, spf: int) -> bytes:
    """mediasim --source pattern: call i, frame s."""
    base = i * 7919 + s * 131
    return array.array("h", ((base + 17 * k) & 0x7fff for k in range(spf))).tobytes()


async def run_down_then_up(pool, tmp_path, server, prefix, calls, seconds, rate, down_s, transport="fast"):
    """A daemon that ran and stopped cleanly (its pool stays), calls started,
    down_s later a new daemon; returns the simulator's summary."""
    args = ("--transport", transport)
    Daemon(pool, tmp_path, *args).start().stop(signal.SIGTERM)
    second = None
    try:
        sim = await Sim(pool, "--start-without-daemon", "--calls", str(calls), "--seconds", str(seconds),
                        "--rate", str(rate), "--source", "pattern", "--target", f"127.0.0.1:{server.port}",
                        "--uuid-prefix", prefix).start()
        await asyncio.sleep(down_s)
        # The calls are open, their slots live in the stopped daemon's pool.
        view = _ring.Pool.attach(pool)
        try:
            assert view.daemon_health() == "stopped"
            assert sum(st == _ring.SLOT_ACTIVE for _, _, st in view.scan()) == calls
        finally:
            view.close()
        assert server.streams == {}                  # nothing reached the AI server without a daemon
        second = Daemon(pool, tmp_path, *args).start()
        summary = await sim.wait()
        for i in range(calls):
            (rec,) = server.streams[f"{prefix}-{i:04d}"]
            await asyncio.wait_for(rec.done.wait(), 10)
        return summary
    finally:
        if second:
            second.cleanup()


def check_call(server, prefix, i, frames, spf, lost):
    (rec,) = server.streams[f"{prefix}-{i:04d}"]   # one stream: a start, not a resume
    assert not rec.start.resumed and rec.start.next_sequence == 0
    gaps = rec.gaps()
    if lost:
        (gap,) = gaps
        assert (gap.first_sequence, gap.count, gap.reason) == (0, lost, pb.Gap.REASON_RING_OVERRUN)
        assert rec.kinds()[1] == "gap"               # announced before the first frame
    else:
        assert gaps == []
    got = rec.frames()
    assert [f.sequence for f in got] == list(range(lost, frames))
    for f in got:
        assert f.pcm == pattern(i, f.sequence, spf), (i, f.sequence)
    assert rec.messages[-1].end.reason == pb.StreamEnd.REASON_HANGUP
    assert rec.messages[-1].end.frames_lost == lost


@pytest.mark.parametrize("transport", ["fast", "grpcio"])
async def test_start_before_daemon_delivers_every_frame_from_the_first(transport, pool, tmp_path, server):
    calls, seconds, rate = 2, 5, 16000   # 3 s down: past the 2 s window, within the ring
    summary = await run_down_then_up(pool, tmp_path, server, "sb", calls, seconds, rate, 3.0, transport)
    assert summary["calls"] == calls and summary["dropped"] == 0
    assert summary["frames_written"] == calls * seconds * 50
    for i in range(calls):
        check_call(server, "sb", i, seconds * 50, rate // 50, 0)


async def test_wait_longer_than_the_ring_is_one_gap_naming_the_dropped_frames(pool, tmp_path, server):
    # At 48 kHz a ring holds ~2.7 s: waiting 4 s, the module drops the oldest
    # frames, and the stream starts with a Gap naming exactly those.
    seconds, rate = 7, 48000
    summary = await run_down_then_up(pool, tmp_path, server, "so", 1, seconds, rate, 4.0)
    assert summary["dropped"] > 0
    check_call(server, "so", 0, seconds * 50, rate // 50, summary["dropped"])
