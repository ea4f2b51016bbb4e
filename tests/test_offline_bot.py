"""The offline voice bot (examples/offline_bot.py) on a simulated call: a
question spoken by espeak-ng is transcribed and answered, and speaking over
the answer cuts it. Real models (Silero in pipecat-ai, pocketsphinx's own),
real espeak-ng, nothing downloaded."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from examples import offline_bot
from examples.offline_demo import FRAME, RATE, Caller, audible_span, espeak
from smartstream.pipecat import pipecat_handler

from .bot_kit import bot_server
from .harness import Sim
from .test_gateway_e2e import recording

QUESTION = "what is the weather like today"
ANSWER = offline_bot.ANSWERS["weather"]
pytestmark = pytest.mark.usefixtures("mediasim")


async def talk(daemon, pool, tmp_path, caller: Caller):
    """The call: the bot's Brain and what the caller heard."""
    daemon()
    caller.write(tmp_path / "caller.wav")
    brain, calls = offline_bot.Brain(say=lambda line: None), []

    async def bot(call):
        calls.append(call)
        return await offline_bot.bot(call, brain)
    async with bot_server(pipecat_handler(bot)) as target:
        sim = await Sim(pool, "--calls", "1", "--seconds", str(caller.seconds), "--rate", str(RATE),
                        "--source", str(tmp_path / "caller.wav"), "--target", target,
                        "--uuid-prefix", "ob", "--record", str(tmp_path)).start()
        await sim.wait()
        await asyncio.wait_for(calls[0].ended.wait(), 10)
    return brain, recording(tmp_path / "ob-0000.wav")


def spoken_ms(pcm: np.ndarray) -> float:
    first, last = audible_span(pcm)
    return (last - first) * 1000 / RATE


async def test_the_bot_transcribes_a_spoken_question_and_answers_it(daemon, pool, tmp_path):
    caller = Caller([(0.5, QUESTION)], seconds=10)
    brain, heard = await talk(daemon, pool, tmp_path, caller)
    [transcript] = brain.heard
    assert "weather" in transcript.split(), transcript
    assert len(set(transcript.split()) & set(QUESTION.split())) >= 3, transcript
    assert brain.said == [ANSWER]
    # The caller heard the answer after the question, whole: as long as espeak-ng says it.
    answer = heard[caller.speech_end():]
    assert np.abs(answer[answer != 0]).mean() > 1000, "the answer is speech, not silence"
    assert abs(spoken_ms(answer) - spoken_ms(espeak(ANSWER, offline_bot.BOT_VOICE))) <= 3 * FRAME * 1000 / RATE


async def test_speaking_over_the_answer_clears_it(daemon, pool, tmp_path):
    caller = Caller([(0.5, QUESTION), (6.0, "no wait, stop please")], seconds=14)
    brain, heard = await talk(daemon, pool, tmp_path, caller)
    assert brain.said[0] == ANSWER and len(brain.heard) == 2, brain.heard
    # What the caller heard of the answer, up to the end of the words spoken over it.
    first, last = audible_span(heard[:caller.speech_end(1)], caller.speech_end(0))
    heard_ms = (last - first) * 1000 / RATE
    full_ms = spoken_ms(espeak(ANSWER, offline_bot.BOT_VOICE))
    assert 0 < heard_ms < full_ms - 1000, "the answer was cut where the caller spoke"
    assert brain.cleared, "the barge-in reached the gateway as a Clear"
    cleared = brain.cleared[0]
    assert cleared.dropped_ms > 0
    # heard_ms: filled in by the playback work in the daemon (it counts espeak's lead-in silence too).
    assert heard_ms - 20 <= cleared.heard_ms <= heard_ms + 300
