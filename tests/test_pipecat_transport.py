"""The Pipecat transport end to end: media simulator -> daemon -> gRPC ->
a Pipecat pipeline (smartstream.pipecat) -> back to the simulated caller."""
from __future__ import annotations

import asyncio
import signal

import numpy as np
import pytest
from pipecat.frames.frames import EndFrame, InputDTMFFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker

from examples import pipecat_bot
from smartstream.pipecat import (
    PlaybackClearedFrame, PlaybackMarkFrame, PlaybackMarkReachedFrame, SmartStreamTransport,
    pipecat_handler,
)

from .bot_kit import ScriptedBot, SentAudio, bot_server
from .harness import Daemon, Sim
from .test_gateway_e2e import noise_wav, recording

RATE = 16000
FRAME_MS = 20
pytestmark = pytest.mark.usefixtures("mediasim")


def noise(seconds: float, seed: int) -> np.ndarray:
    pcm = np.random.default_rng(seed).integers(-20000, 20000, int(RATE * seconds), dtype="<i2")
    pcm[pcm == 0] = 1   # every played sample is non-zero, so the recording counts them
    return pcm


class Bot:
    """The bot factory of a test: one ScriptedBot per call, kept for the asserts."""

    def __init__(self, **script):
        self.script, self.calls, self.bots, self.sent = script, [], [], []

    async def __call__(self, call):
        self.calls.append(call)
        transport = SmartStreamTransport(call)
        bot, sent = ScriptedBot(rate=RATE, **self.script), SentAudio()
        self.bots.append(bot)
        self.sent.append(sent)
        return PipelineWorker(Pipeline([transport.input(), bot, transport.output(), sent]),
                              params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE))


async def run_call(daemon, pool, tmp_path, bot, *sim_args, seconds=3):
    """One simulated call to `bot`; returns the simulator, its summary, what the caller heard."""
    daemon()
    noise_wav(tmp_path / "in.wav", RATE, 0.73)
    calls = []

    async def factory(call):
        calls.append(call)
        return await bot(call)
    async with bot_server(pipecat_handler(factory)) as target:
        sim = await Sim(pool, "--calls", "1", "--seconds", str(seconds), "--rate", str(RATE),
                        "--source", str(tmp_path / "in.wav"), "--target", target,
                        "--uuid-prefix", "pc", "--record", str(tmp_path), *sim_args).start()
        summary = await sim.wait()
        await asyncio.wait_for(calls[0].ended.wait(), 10)
    return sim, summary, recording(tmp_path / "pc-0000.wav")


async def test_audio_both_ways_is_bit_exact_and_the_call_reaches_the_bot(daemon, pool, tmp_path):
    utterance = noise(1.5, seed=7)
    bot = Bot(utterance=utterance.tobytes(), after=[PlaybackMarkFrame(mark="utterance-end")])
    sim, summary, heard = await run_call(
        daemon, pool, tmp_path, bot, "--dtmf", "5#", "--caller", "1000",
        "--metadata", '{"lang": "en", "account": {"id": 42}}')
    [call], [script] = bot.calls, bot.bots
    assert call.start.caller == "1000" and call.sample_rate == RATE
    assert call.metadata == {"lang": "en", "account": {"id": 42}}
    # Caller -> bot: every frame, sample for sample, at the stream's rate.
    src = recording(tmp_path / "in.wav")
    got = np.frombuffer(bytes(script.caller_audio), dtype="<i2")
    assert len(got) == summary["frames_written"] * RATE * FRAME_MS // 1000
    assert np.array_equal(got, np.resize(src, len(got)))
    # Bot -> caller: the utterance, contiguous and exact, then silence.
    start = int(np.flatnonzero(heard)[0])
    assert np.array_equal(heard[start:start + len(utterance)], utterance)
    assert not heard[start + len(utterance):].any()
    # The mark queued after it was reached once the caller heard it all.
    assert [(m.mark, m.cleared) for m in script.of(PlaybackMarkReachedFrame)] == [("utterance-end", False)]
    assert [f.button.value for f in script.of(InputDTMFFrame)] == ["5", "#"]


async def test_an_interruption_clears_playback_within_one_frame(daemon, pool, tmp_path):
    utterance = noise(4, seed=3)
    bot = Bot(utterance=utterance.tobytes(), interrupt_after=50)   # 1 s into the call
    await run_call(daemon, pool, tmp_path, bot, seconds=3)
    [script], [sent] = bot.bots, bot.sent
    heard = recording(tmp_path / "pc-0000.wav")
    heard_ms = np.count_nonzero(heard) * 1000 / RATE
    sent_ms = len(sent.pcm) * 1000 / (2 * RATE)
    [cleared] = script.of(PlaybackClearedFrame)
    # What reached the gateway was heard or dropped, nothing else: the Clear
    # cut the playout within one frame of where it was.
    assert abs(heard_ms + cleared.dropped_ms - sent_ms) <= FRAME_MS
    assert 0 < heard_ms < 3000, "the interruption 1 s into the call cut the 4 s utterance"
    played = heard[heard != 0]
    assert np.array_equal(played, utterance[:len(played)])
    # heard_ms: filled in by the playback work in the daemon.
    assert abs(cleared.heard_ms - heard_ms) <= FRAME_MS


async def test_end_of_pipeline_hangs_up_once_the_caller_heard_it(daemon, pool, tmp_path):
    utterance = noise(1, seed=5)
    bot = Bot(utterance=utterance.tobytes(), after=[EndFrame()])
    sim, _, heard = await run_call(daemon, pool, tmp_path, bot, seconds=4)
    assert [m["data"] for m in sim.messages("hangup", "pc-0000")] == ["NORMAL_CLEARING"]
    assert np.array_equal(heard[heard != 0], utterance)
    # The call ended at the hangup, not at the end of the run.
    assert len(heard) < 4 * RATE


async def test_the_example_bot_says_back_what_the_caller_says(daemon, pool, tmp_path):
    _, _, heard = await run_call(daemon, pool, tmp_path, pipecat_bot.bot, seconds=2)
    src = recording(tmp_path / "in.wav")   # noise without a zero sample
    played = heard[heard != 0]   # playout may pause between echoed frames: silence, not loss
    assert len(played) > RATE // 2
    assert np.array_equal(played, np.resize(src, len(played)))


async def test_a_daemon_restart_goes_unnoticed_by_the_pipeline(pool, tmp_path):
    """The stream breaks and comes back resumed: the same pipeline goes on
    and gets every caller frame exactly once."""
    bot = Bot(utterance=noise(0.5, seed=9).tobytes())
    noise_wav(tmp_path / "in.wav", RATE, 0.73)
    first = Daemon(pool, tmp_path).start()
    second = None
    try:
        async with bot_server(pipecat_handler(bot)) as target:
            sim = await Sim(pool, "--calls", "1", "--seconds", "4", "--rate", str(RATE),
                            "--source", str(tmp_path / "in.wav"), "--target", target,
                            "--uuid-prefix", "rs").start()
            while not bot.bots or bot.bots[0].caller_frames < 50:
                await asyncio.sleep(0.05)
            first.stop(signal.SIGTERM)   # a clean stop: every frame it took was sent
            second = Daemon(pool, tmp_path).start()
            summary = await sim.wait()
            await asyncio.wait_for(bot.calls[0].ended.wait(), 10)
    finally:
        first.cleanup()
        if second:
            second.cleanup()
    [script] = bot.bots   # one pipeline for the whole call
    assert bot.calls[0].start.resumed
    got = np.frombuffer(bytes(script.caller_audio), dtype="<i2")
    assert len(got) == summary["frames_written"] * RATE * FRAME_MS // 1000
    assert np.array_equal(got, np.resize(recording(tmp_path / "in.wav"), len(got)))
