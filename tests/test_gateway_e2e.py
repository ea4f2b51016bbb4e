"""End to end, real processes on loopback: media simulator -> shared memory ->
gateway daemon -> gRPC -> a real grpc.aio server in the test, and back."""
from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest

from smartstream.v1 import smartstream_pb2 as pb

from .harness import Sim

FRAME_MS = 20
pytestmark = pytest.mark.usefixtures("mediasim")


@pytest.fixture(params=["fast", "grpcio"])
def daemon(request, daemon):
    """The daemon with each transport: the same behaviour is asked of both."""
    return lambda *args, **kw: daemon("--transport", request.param, *args, **kw)


def noise_wav(path, rate: int, seconds: float, seed: int = 1) -> np.ndarray:
    """Random PCM16: any misplaced, lost or repeated sample shows."""
    pcm = np.random.default_rng(seed).integers(-20000, 20000, int(rate * seconds), dtype="<i2")
    pcm[pcm == 0] = 1
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return pcm


def looped(pcm: np.ndarray, n: int) -> np.ndarray:
    return np.resize(pcm, n)


def recording(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def target(server) -> str:
    return f"127.0.0.1:{server.port}"


async def test_round_trip_is_sample_exact(daemon, pool, server, tmp_path):
    daemon()
    src = noise_wav(tmp_path / "in.wav", 16000, 0.73)
    tts = np.random.default_rng(7).integers(-30000, 30000, 16000, dtype="<i2")
    tts[tts == 0] = 1
    server.on_start = lambda rec: rec.send(audio=pb.Audio(pcm=tts.tobytes(), sample_rate=16000))
    sim = await Sim(pool, "--calls", "2", "--seconds", "2", "--rate", "16000",
                    "--source", str(tmp_path / "in.wav"), "--target", target(server),
                    "--uuid-prefix", "rt", "--record", str(tmp_path)).start()
    summary = await sim.wait()
    await asyncio.sleep(0.3)
    assert summary["calls"] == 2
    for uuid in ("rt-0000", "rt-0001"):
        [rec] = server.streams[uuid]
        await asyncio.wait_for(rec.done.wait(), 5)
        kinds = rec.kinds()
        assert kinds[0] == "start" and kinds[-1] == "end"
        assert set(kinds[1:-1]) == {"audio", "drained"} and kinds.count("drained") == 1
        assert rec.messages[-1].end.reason == pb.StreamEnd.REASON_HANGUP
        assert rec.start.sample_rate == 16000 and not rec.start.resumed
        frames = rec.frames()
        assert [f.sequence for f in frames] == list(range(len(frames)))
        got = np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2")
        assert len(frames) == summary["frames_written"] // 2
        assert np.array_equal(got, looped(src, len(got)))
        heard = recording(tmp_path / f"{uuid}.wav")
        start = int(np.flatnonzero(heard)[0])
        assert np.array_equal(heard[start:start + len(tts)], tts)
        assert not heard[start + len(tts):].any()


async def test_stream_end_tells_a_stop_from_a_hangup(daemon, pool, server, tmp_path):
    daemon()
    for end, reason in (("stop", pb.StreamEnd.REASON_STOPPED), ("hangup", pb.StreamEnd.REASON_HANGUP)):
        sim = await Sim(pool, "--calls", "1", "--seconds", "0.5", "--end", end,
                        "--target", target(server), "--uuid-prefix", end).start()
        await sim.wait()
        [rec] = server.streams[f"{end}-0000"]
        await asyncio.wait_for(rec.done.wait(), 5)
        assert rec.kinds()[0] == "start" and rec.kinds()[-1] == "end"
        assert rec.messages[-1].end.reason == reason, rec.messages[-1].end


async def test_rate_conversion_both_ways(daemon, pool, server, tmp_path):
    daemon()
    rate_in, rate_ai, rate_tts = 8000, 16000, 24000
    t = np.arange(rate_tts) / rate_tts
    tts = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    server.on_start = lambda rec: rec.send(audio=pb.Audio(pcm=tts.tobytes(), sample_rate=rate_tts))
    noise_wav(tmp_path / "in.wav", rate_in, 1.0)
    sim = await Sim(pool, "--calls", "1", "--seconds", "2", "--rate", str(rate_in),
                    "--sample-rate", str(rate_ai), "--source", str(tmp_path / "in.wav"),
                    "--target", target(server), "--uuid-prefix", "rc", "--record",
                    str(tmp_path)).start()
    summary = await sim.wait()
    await asyncio.sleep(0.3)
    [rec] = server.streams["rc-0000"]
    assert rec.start.sample_rate == rate_ai and rec.start.channel_sample_rate == rate_in
    samples = sum(len(f.pcm) // 2 for f in rec.frames())
    # 8 -> 16 kHz doubles the samples, less the resampler's start-up delay (< 20 ms).
    expected = summary["frames_written"] * rate_ai * FRAME_MS // 1000
    assert expected - rate_ai // 50 <= samples <= expected
    # 24 kHz TTS played at 8 kHz: a 440 Hz tone of about 1 s (tolerance: one frame).
    heard = recording(tmp_path / "rc-0000.wav").astype(float)
    loud = np.flatnonzero(np.abs(heard) > 1000)
    assert abs((loud[-1] - loud[0]) / rate_in - 1.0) < FRAME_MS / 1000
    seg = heard[loud[0]:loud[-1]]
    freq = np.argmax(np.abs(np.fft.rfft(seg))) * rate_in / len(seg)
    assert abs(freq - 440) < 5


async def test_clear_drops_queued_audio_and_marks_follow_playout(daemon, pool, server, tmp_path):
    daemon()
    tone = (8000 * np.sin(2 * np.pi * 300 * np.arange(16000 * 4) / 16000)).astype("<i2")
    tone[tone == 0] = 1   # every played sample is non-zero, so the recording counts them
    sent_at = {}

    def on_start(rec):
        loop = asyncio.get_running_loop()
        rec.send(audio=pb.Audio(pcm=tone[:16000].tobytes(), sample_rate=16000))
        rec.send(mark=pb.Mark(name="one-second"))
        rec.send(audio=pb.Audio(pcm=tone[16000:].tobytes(), sample_rate=16000))
        rec.send(mark=pb.Mark(name="end"))
        sent_at["t"] = loop.time()
        loop.call_later(1.5, lambda: rec.send(clear=pb.Clear()))
    server.on_start = on_start
    noise_wav(tmp_path / "in.wav", 16000, 0.5)
    sim = await Sim(pool, "--calls", "1", "--seconds", "3", "--source", str(tmp_path / "in.wav"),
                    "--target", target(server), "--uuid-prefix", "cl", "--record",
                    str(tmp_path)).start()
    await sim.wait()
    [rec] = server.streams["cl-0000"]
    await asyncio.wait_for(rec.done.wait(), 5)
    marks = [m.mark for m in rec.messages if m.HasField("mark")]
    cleared = [m.cleared for m in rec.messages if m.HasField("cleared")]
    assert [(m.name, m.cleared) for m in marks] == [("one-second", False), ("end", True)]
    assert len(cleared) == 1
    # What was not dropped was played, and nothing after the Clear: within one frame.
    heard = recording(tmp_path / "cl-0000.wav")
    played_ms = np.count_nonzero(heard) * 1000 / 16000
    assert abs(played_ms + cleared[0].dropped_ms - 4000) <= FRAME_MS
    # The module told FreeSWITCH about the mark only once it was played.
    assert [m["data"] for m in sim.messages("mark", "cl-0000")] == ["one-second"]


async def test_ai_server_restart_resumes_without_losing_frames(daemon, pool, server, tmp_path):
    daemon()
    src = noise_wav(tmp_path / "in.wav", 16000, 1.0)
    sim = await Sim(pool, "--calls", "2", "--seconds", "4", "--source", str(tmp_path / "in.wav"),
                    "--target", target(server), "--uuid-prefix", "rs").start()
    await asyncio.sleep(1.5)
    await server.stop(0)
    await asyncio.sleep(0.6)          # well inside the 2 s resume bound
    await server.start(server.port)
    summary = await sim.wait()
    await asyncio.sleep(0.5)
    assert not sim.messages("hangup") and not sim.messages("error")
    for uuid in ("rs-0000", "rs-0001"):
        recs = server.streams[uuid]
        assert len(recs) == 2
        assert not recs[0].start.resumed and recs[1].start.resumed
        by_seq = {f.sequence: f.pcm for f in server.all_frames(uuid)}
        n = summary["frames_written"] // 2
        assert sorted(by_seq) == list(range(n)), "a frame inside the resume bound was lost"
        got = np.frombuffer(b"".join(by_seq[i] for i in range(n)), dtype="<i2")
        assert np.array_equal(got, looped(src, len(got)))
        assert recs[1].start.next_sequence <= min(f.sequence for f in recs[1].frames())
        assert recs[1].messages[-1].HasField("end")


async def test_unreachable_and_malformed_targets_leave_other_calls_alone(daemon, pool, server,
                                                                         tmp_path):
    d = daemon()
    noise_wav(tmp_path / "in.wav", 16000, 0.5)
    good = await Sim(pool, "--calls", "1", "--seconds", "2", "--source", str(tmp_path / "in.wav"),
                     "--target", target(server), "--uuid-prefix", "ok").start()
    bad = await Sim(pool, "--calls", "1", "--seconds", "2", "--target", "no port here",
                    "--uuid-prefix", "bad").start()
    dead = await Sim(pool, "--calls", "1", "--seconds", "2", "--target", "127.0.0.1:9",
                     "--uuid-prefix", "dead", "--payload", "{not json").start()
    ok_summary = await good.wait()
    bad_summary = await bad.wait()
    dead_summary = await dead.wait()
    errors = bad.messages("error", "bad-0000")
    assert errors and "expected host:port" in errors[0]["data"]
    assert bad_summary["frames_written"] == ok_summary["frames_written"]
    assert dead_summary["frames_written"] == ok_summary["frames_written"]
    assert "send_payload rejected" in dead.messages("error", "dead-0000")[0]["data"]
    [rec] = server.streams["ok-0000"]
    await asyncio.wait_for(rec.done.wait(), 5)
    assert len(rec.frames()) == ok_summary["frames_written"]
    log = d.log()
    assert "retrying" in log and "dead-0000" in log
    assert d.proc.poll() is None


async def test_misbehaving_server_gets_its_stream_closed(daemon, pool, server, tmp_path):
    d = daemon()
    server.on_start = lambda rec: rec.send(audio=pb.Audio(pcm=b"\0\0" * 10, sample_rate=12345)) \
        if rec.uuid == "mb-0000" else None
    sim = await Sim(pool, "--calls", "2", "--seconds", "2", "--target", target(server),
                    "--uuid-prefix", "mb").start()
    summary = await sim.wait()
    bad, good = server.streams["mb-0000"][0], server.streams["mb-0001"][0]
    await asyncio.wait_for(good.done.wait(), 5)
    assert bad.messages[-1].end.reason == pb.StreamEnd.REASON_PROTOCOL
    assert "sample_rate 12345" in bad.messages[-1].end.detail
    assert "sample_rate 12345" in sim.messages("error", "mb-0000")[0]["data"]
    assert len(good.frames()) == summary["frames_written"] // 2
    assert "broke the protocol" in d.log() and d.proc.poll() is None


async def test_200_concurrent_calls_lose_no_frame(daemon, pool, server, tmp_path):
    daemon(slots=256)
    sim = await Sim(pool, "--calls", "200", "--seconds", "10", "--target", target(server),
                    "--uuid-prefix", "load").start()
    summary = await sim.wait(timeout=90)
    await asyncio.sleep(1.0)
    per_call = summary["frames_written"] // 200
    assert summary["dropped"] == 0
    for i in range(200):
        [rec] = server.streams[f"load-{i:04d}"]
        await asyncio.wait_for(rec.done.wait(), 10)
        assert [f.sequence for f in rec.frames()] == list(range(per_call))
