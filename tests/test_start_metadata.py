"""Start metadata comes from the dialplan (uuid_ai_stream ... metadata=), which
the module's cJSON accepts nested 990 deep. The daemon bounds it (32 levels,
the proto's word): a call with deeper metadata gets its StreamStart without
it and a warning, every other call in the same ticks is untouched, and a
daemon restarted onto such slots starts and resumes them (issue 13)."""
from __future__ import annotations

import asyncio
import signal

import pytest

from smartstream.v1 import smartstream_pb2 as pb

from .harness import Sim

pytestmark = pytest.mark.usefixtures("mediasim")


def deep(levels: int) -> str:
    return '{"a":' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


async def calls(pool, server, seconds: float):
    args = ("--seconds", str(seconds), "--target", f"127.0.0.1:{server.port}")
    bad = await Sim(pool, "--calls", "2", "--uuid-prefix", "deep", "--metadata", deep(990), *args,
                    "--call-seconds", "0.5", "--churn").start()   # slots close in the same ticks
    bad60 = await Sim(pool, "--calls", "1", "--uuid-prefix", "d60", "--metadata", deep(60), *args).start()
    ok = await Sim(pool, "--calls", "1", "--uuid-prefix", "ok", "--metadata",
                   '{"campaign": {"id": 7}}', *args).start()
    return bad, bad60, ok


def check(server, ok_summary):
    for uuid, recs in server.streams.items():
        if uuid.startswith(("deep", "d60")):
            assert all(not r.start.HasField("metadata") for r in recs), uuid
    [ok] = server.streams["ok-0000"][-1:]
    assert ok.start.metadata["campaign"]["id"] == 7
    got = {f.sequence for r in server.streams["ok-0000"] for f in r.frames()}
    assert got == set(range(ok_summary["frames_written"]))


@pytest.mark.parametrize("transport", ["fast", "grpcio"])
async def test_deep_metadata_costs_its_call_only_its_metadata(transport, daemon, pool, server):
    d = daemon("--transport", transport)
    bad, bad60, ok = await calls(pool, server, 2)
    await bad.wait()
    await bad60.wait()
    summary = await ok.wait()
    await asyncio.sleep(0.3)
    check(server, summary)
    assert sum(1 for u in server.streams if u.startswith("deep")) >= 4   # churned calls all streamed
    for recs in server.streams.values():
        await asyncio.wait_for(recs[-1].done.wait(), 5)
        assert recs[-1].messages[-1].end.reason == pb.StreamEnd.REASON_HANGUP
    log = d.log()
    assert "start metadata not sent: nested deeper than 32 levels" in log
    assert "Traceback" not in log and d.proc.poll() is None


async def test_a_daemon_restarted_onto_deep_metadata_starts_and_resumes(daemon, pool, server):
    first = daemon("--resume-bound-ms", "5000")
    bad, bad60, ok = await calls(pool, server, 4)
    await asyncio.sleep(1.5)
    first.stop(signal.SIGKILL)
    second = daemon("--resume-bound-ms", "5000")
    await bad.wait()
    await bad60.wait()
    summary = await ok.wait()
    await asyncio.sleep(0.3)
    check(server, summary)
    assert server.streams["d60-0000"][-1].start.resumed
    assert "Traceback" not in second.log() and second.proc.poll() is None
