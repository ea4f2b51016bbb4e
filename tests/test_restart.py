"""The daemon killed with SIGKILL mid-call and started again: the calls never
notice (the simulator's writes never block), the new daemon re-attaches the
pool, finds the live slots and resumes their streams, and the frames written
while it was down reach the AI server."""
from __future__ import annotations

import asyncio
import signal

import pytest

from smartstream.v1 import smartstream_pb2 as pb

from .harness import Daemon, Sim

pytestmark = pytest.mark.usefixtures("mediasim")
CALLS, SECONDS = 3, 5
IN_FLIGHT = 3   # frames the killed daemon had drained but not yet put on the wire: at most a tick or two


@pytest.mark.parametrize("transport", ["fast", "grpcio"])
async def test_sigkill_and_restart_resumes_every_call(transport, pool, tmp_path, server):
    first = Daemon(pool, tmp_path, "--transport", transport).start()
    second = None
    try:
        sim = await Sim(pool, "--calls", str(CALLS), "--seconds", str(SECONDS), "--source",
                        "pattern", "--target", f"127.0.0.1:{server.port}",
                        "--uuid-prefix", "rs").start()
        while len(server.streams) < CALLS:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        first.stop(signal.SIGKILL)
        await asyncio.sleep(0.8)                     # the calls go on, frames pile up in the rings
        second = Daemon(pool, tmp_path, "--transport", transport).start()
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
            seqs = {f.sequence for rec in recs for f in rec.frames()}
            resumed_from = recs[1].start.next_sequence
            # Everything the new daemon found in the ring, up to the last frame.
            assert set(range(resumed_from, SECONDS * 50)) <= seqs
            missing = set(range(SECONDS * 50)) - seqs
            assert len(missing) <= IN_FLIGHT and all(s < resumed_from for s in missing)
    finally:
        first.cleanup()
        if second:
            second.cleanup()
