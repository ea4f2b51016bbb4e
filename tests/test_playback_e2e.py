"""Playback a bot can steer, end to end with real processes: an AI server in
the test, the daemon (both transports), the media simulator recording what
the caller heard (and streaming it back as the outbound track)."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from smartstream.playback import MARKS_MAX
from smartstream.v1 import smartstream_pb2 as pb

from .daemon_kit import scrape, write_config
from .harness import Sim
from .test_gateway_e2e import daemon, recording, target  # noqa: F401 (daemon: both transports)

RATE = 16000
MS = RATE * 2 // 1000      # bytes per ms
FRAME_MS = 20
pytestmark = pytest.mark.usefixtures("mediasim")


def noise(ms: int, seed: int) -> bytes:
    """Random non-zero PCM16: a lost, moved or repeated sample shows, and the
    recording's non-zero samples are exactly what TTS played."""
    pcm = np.random.default_rng(seed).integers(-30000, 30000, ms * RATE // 1000, dtype="<i2")
    pcm[pcm == 0] = 1
    return pcm.tobytes()


def splits(data: bytes, sizes) -> list[bytes]:
    out, at, i = [], 0, 0
    while at < len(data):
        out.append(data[at:at + sizes[i % len(sizes)]])
        at, i = at + sizes[i % len(sizes)], i + 1
    return out


def heard_tts(path) -> bytes:
    pcm = recording(path)
    return pcm[pcm != 0].tobytes()


def speak(rec, pcm: bytes, *marks: str) -> None:
    rec.send(audio=pb.Audio(pcm=pcm, sample_rate=RATE))
    for name in marks:
        rec.send(mark=pb.Mark(name=name))


def of(rec, kind: str) -> list:
    return [getattr(m, kind) for m in rec.messages if m.WhichOneof("msg") == kind]


async def run_call(pool, server, tmp_path, prefix: str, seconds: float, *extra: str):
    sim = await Sim(pool, "--calls", "1", "--seconds", str(seconds), "--rate", str(RATE),
                    "--target", target(server), "--uuid-prefix", prefix,
                    "--record", str(tmp_path), *extra).start()
    await sim.wait()
    [rec] = server.streams[f"{prefix}-0000"]
    await asyncio.wait_for(rec.done.wait(), 5)
    return sim, rec


async def test_audio_of_any_length_reaches_the_caller_bit_exact(daemon, pool, server, tmp_path):
    daemon()
    tts = {"odd-0000": noise(600, 1), "odd-0001": noise(600, 2)}
    chunking = {"odd-0000": [1, 3, 161, 8191],
                "odd-0001": [int(n) for n in np.random.default_rng(5).integers(0, 900, 400)]}

    def on_start(rec):
        for chunk in splits(tts[rec.uuid], chunking[rec.uuid]):
            rec.send(audio=pb.Audio(pcm=chunk, sample_rate=RATE))
    server.on_start = on_start
    sim = await Sim(pool, "--calls", "2", "--seconds", "1.5", "--target", target(server),
                    "--uuid-prefix", "odd", "--record", str(tmp_path)).start()
    await sim.wait()
    for uuid, pcm in tts.items():
        [rec] = server.streams[uuid]
        await asyncio.wait_for(rec.done.wait(), 5)
        assert rec.messages[-1].end.reason == pb.StreamEnd.REASON_HANGUP   # no protocol error
        assert heard_tts(tmp_path / f"{uuid}.wav") == pcm


async def test_overflow_is_told_and_the_caller_hears_exactly_the_rest(daemon, pool, server, tmp_path):
    d = daemon("--config", str(write_config(tmp_path / "q.toml", max_tts_queue_ms=300)))
    chunks = [noise(100, i) for i in range(8)]

    def on_start(rec):
        for i, chunk in enumerate(chunks):
            rec.send(audio=pb.Audio(pcm=chunk, sample_rate=RATE))
            if i == 1:
                rec.send(mark=pb.Mark(name="two"))
    server.on_start = on_start
    sim, rec = await run_call(pool, server, tmp_path, "of", 1.5)
    dropped = of(rec, "playback_dropped")
    assert dropped, "a 300 ms queue took 800 ms"
    # Each lossy message lost its tail, told in order: position_ms is where the
    # loss began in the audio queued, so the told losses rebuild what was kept.
    kept, todo = b"", list(dropped)
    for i, chunk in enumerate(chunks):
        x = todo[0] if todo else None
        if x and x.position_ms - len(kept) // MS + x.dropped_ms == 100:
            todo.pop(0)
            assert x.after_mark == ("two" if i >= 2 else "")
            kept += chunk[:len(chunk) - x.dropped_ms * MS]
        else:
            kept += chunk
    assert not todo, f"PlaybackDropped that match no message: {todo}"
    assert heard_tts(tmp_path / "of-0000.wav") == kept
    metrics = await scrape(d.admin)
    assert metrics['smartstream_frames_dropped_total{reason="tts_overflow"}'] == len(dropped)
    assert metrics["smartstream_tts_dropped_seconds_total"] == pytest.approx(
        sum(x.dropped_ms for x in dropped) / 1000)


async def test_pause_then_continue_resumes_exactly_where_it_stopped(daemon, pool, server, tmp_path):
    daemon()
    tts = noise(800, 9)

    def on_start(rec):
        loop = asyncio.get_running_loop()
        rec.send(audio=pb.Audio(pcm=tts, sample_rate=RATE))
        loop.call_later(0.3, lambda: rec.send(pause_playback=pb.PausePlayback()))
        loop.call_later(0.8, lambda: rec.send(get_playback_status=pb.GetPlaybackStatus(request_id="p")))
        loop.call_later(0.8, lambda: rec.send(
            get_playback_status=pb.GetPlaybackStatus(request_id="x" * 65)))
        loop.call_later(1.3, lambda: rec.send(continue_playback=pb.ContinuePlayback()))
    server.on_start = on_start
    sim, rec = await run_call(pool, server, tmp_path, "pz", 2.6)
    heard = recording(tmp_path / "pz-0000.wav")
    assert heard[heard != 0].tobytes() == tts              # no gap, no repeat
    playing = np.flatnonzero(heard)
    silent = np.diff(playing).max() - 1                    # the pause, inside the utterance
    assert silent >= RATE // 2, f"a 1 s pause left only {silent} silent samples"
    [status] = of(rec, "playback_status")
    assert status.request_id == "p" and status.paused and not status.flow_off
    assert 0 < status.queued_ms < 800 and status.queued_ms + status.played_ms == 800
    [refused] = of(rec, "refused")
    assert (refused.message, refused.code) == ("get_playback_status", pb.Refused.CODE_INVALID)
    [drained] = of(rec, "drained")
    assert drained.played_ms == 800


async def test_drained_comes_within_a_frame_of_the_last_sample_heard(daemon, pool, server, tmp_path):
    daemon()
    tts = noise(500, 4)

    server.on_start = lambda rec: speak(rec, tts, "end")
    sim, rec = await run_call(pool, server, tmp_path, "dr", 1.2, "--tracks", "both")
    [drained] = of(rec, "drained")
    assert (drained.played_ms, drained.last_mark) == (500, "end")
    # The outbound track is what the caller heard, frame by frame, in one
    # ordered stream with the drained message: where the last sample went
    # out against where drained did.
    outbound, at = [], None
    for m in rec.messages:
        if m.HasField("audio") and m.audio.track == pb.TRACK_OUTBOUND:
            outbound.append(m.audio.pcm)
        elif m.HasField("drained"):
            at = len(outbound)
    last = max(i for i, pcm in enumerate(outbound) if any(pcm))
    assert abs(at - (last + 1)) <= 1, (at, last)
    assert b"".join(outbound).replace(b"\0\0", b"") == tts.replace(b"\0\0", b"")


async def test_clear_says_how_much_the_caller_heard(daemon, pool, server, tmp_path):
    daemon()
    tts = noise(2000, 6)

    def on_start(rec):
        speak(rec, tts, "a", "b")
        asyncio.get_running_loop().call_later(0.7, lambda: rec.send(clear=pb.Clear()))
    server.on_start = on_start
    sim, rec = await run_call(pool, server, tmp_path, "hc", 1.5)
    [cleared] = of(rec, "cleared")
    heard = heard_tts(tmp_path / "hc-0000.wav")
    assert abs(cleared.heard_ms - len(heard) // MS) <= FRAME_MS
    assert heard == tts[:len(heard)]
    assert cleared.heard_ms + cleared.dropped_ms == 2000
    assert list(cleared.discarded_marks) == ["a", "b"]
    assert [(m.name, m.cleared) for m in of(rec, "mark")] == [("a", True), ("b", True)]
    assert not of(rec, "drained")   # cleared, not drained


async def test_marks_beyond_the_cap_are_refused_and_the_rest_kept(daemon, pool, server, tmp_path):
    daemon()
    names = [f"m{i}" for i in range(MARKS_MAX + 6)]

    def on_start(rec):   # 10 s of audio keeps every mark waiting; two bursts, each in budget
        speak(rec, noise(10000, 8), *names[:600])
        asyncio.get_running_loop().call_later(1.5, lambda: speak(rec, b"", *names[600:]))
    server.on_start = on_start
    sim, rec = await run_call(pool, server, tmp_path, "mc", 2.5)
    assert rec.messages[-1].end.reason == pb.StreamEnd.REASON_HANGUP
    refused = of(rec, "refused")
    assert [(r.message, r.code) for r in refused] == [("mark", pb.Refused.CODE_RATE_LIMITED)] * 6
    assert not of(rec, "mark")   # none reached, none refused silently


async def test_flow_control_turns_off_at_the_high_and_on_at_the_low_watermark(
        daemon, pool, server, tmp_path):
    daemon()

    def on_start(rec):
        rec.send(flow_control=pb.PlaybackFlowControl(enabled=True, high_watermark_ms=200,
                                                     low_watermark_ms=400))
        rec.send(flow_control=pb.PlaybackFlowControl(enabled=True, high_watermark_ms=600,
                                                     low_watermark_ms=200))
        rec.send(audio=pb.Audio(pcm=noise(1000, 8), sample_rate=RATE))
    server.on_start = on_start
    sim, rec = await run_call(pool, server, tmp_path, "fc", 1.6)
    [refused] = of(rec, "refused")
    assert (refused.message, refused.code) == ("flow_control", pb.Refused.CODE_INVALID)
    flow = of(rec, "flow")
    assert [f.flow_off for f in flow] == [True, False]
    assert flow[0].queued_ms >= 600 and flow[1].queued_ms <= 200
    assert len(heard_tts(tmp_path / "fc-0000.wav")) == 1000 * MS


async def test_send_dtmf_reaches_the_call_and_bad_digits_are_refused(daemon, pool, server, tmp_path):
    config = write_config(tmp_path / "dtmf.toml", extra=(
        f'[targets."{target(server)}"]\nallow_actions = ["hangup", "event", "send_dtmf"]\n'))
    daemon("--config", str(config))

    def on_start(rec):
        rec.send(send_dtmf=pb.SendDtmf(digits="12#A"))
        rec.send(send_dtmf=pb.SendDtmf(digits="1x"))
        rec.send(send_dtmf=pb.SendDtmf(digits="9w*", duration_ms=250))
        rec.send(send_dtmf=pb.SendDtmf(digits="5", duration_ms=5001))
    server.on_start = on_start
    sim, rec = await run_call(pool, server, tmp_path, "dt", 0.6)
    assert "send_dtmf" in rec.start.allowed_actions
    assert [d.digits for d in of(rec, "dtmf_sent")] == ["12#A", "9w*"]
    assert [(r.message, r.code) for r in of(rec, "refused")] == \
        [("send_dtmf", pb.Refused.CODE_INVALID)] * 2
    assert [(m["data"], m["duration_ms"]) for m in sim.messages("send_dtmf")] == \
        [("12#A", 100), ("9w*", 250)]
