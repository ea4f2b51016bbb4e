"""An offline voice bot on SmartStream's Pipecat transport: it listens,
understands, answers, and stops talking when the caller talks over it.

    pip install 'smartstream[bots]'; apt-get install espeak-ng
    python examples/offline_bot.py --listen 127.0.0.1:50051

Every model ships in a package, nothing is fetched at run time:
  VAD  Silero, the ONNX model inside pipecat-ai (onnxruntime, no torch)
  ASR  pocketsphinx, its US English model inside its wheel
  TTS  espeak-ng (Debian), run per answer
The "brain" is a keyword table; swap in an LLM service for a real one.
"""
from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncGenerator

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStartedSpeakingFrame, BotStoppedSpeakingFrame, Frame, TranscriptionFrame, TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.settings import STTSettings, TTSSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.utils.time import time_now_iso8601
from pocketsphinx import Decoder

try:
    from smartstream.pipecat import CallStream, PlaybackClearedFrame, SmartStreamTransport, main
except ImportError:  # `python examples/offline_bot.py` from a checkout, without PYTHONPATH
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from smartstream.pipecat import CallStream, PlaybackClearedFrame, SmartStreamTransport, main

ASR_RATE = 16000   # pocketsphinx's en-us model
BOT_VOICE = ["-v", "en-us", "-s", "150"]   # espeak-ng voice and words per minute
ANSWERS = {        # first keyword heard -> answer
    "weather": "It is sunny and warm in the simulator today, with a light breeze from the data center.",
    "time": "It is always twenty past the hour in here.",
    "name": "I am the SmartStream offline bot.",
    "bye": "Goodbye, and thank you for calling.",
}
NOT_UNDERSTOOD = "Sorry, I did not catch that. Ask me about the weather or the time."


def answer(heard: str) -> str:
    words = heard.lower().split()
    return next((a for k, a in ANSWERS.items() if k in words), NOT_UNDERSTOOD)


class PocketsphinxSTTService(SegmentedSTTService):
    """Transcribes each VAD segment whole with pocketsphinx, off the event loop.
    Whole, not streamed: streaming needs a cepstral mean of the caller's voice
    that pocketsphinx only gets right from whole utterances (measured: the
    first streamed turn of a call comes out garbled)."""

    def __init__(self, **kwargs):
        super().__init__(sample_rate=ASR_RATE, settings=STTSettings(model="en-us", language=None),
                         **kwargs)
        self._decoder = Decoder(samprate=ASR_RATE)   # one per call: a decoder is not thread-safe

    @property
    def wants_wav_segments(self) -> bool:
        return False   # pocketsphinx reads raw PCM16

    def _decode(self, pcm: bytes) -> str:
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp else ""

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        text = await asyncio.to_thread(self._decode, audio)
        if text:
            yield TranscriptionFrame(text, user_id="caller", timestamp=time_now_iso8601())


class EspeakTTSService(TTSService):
    """espeak-ng's WAV on stdout, streamed into the pipeline as it is made."""

    def __init__(self, args: list[str] = BOT_VOICE, **kwargs):
        super().__init__(push_start_frame=True, push_stop_frames=True,
                         settings=TTSSettings(model=None, voice=args[1], language=None), **kwargs)
        self._args = args

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        proc = await asyncio.create_subprocess_exec(
            "espeak-ng", *self._args, "--stdout", "--", text,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

        async def chunks():
            while data := await proc.stdout.read(8192):
                yield data
        try:
            async for frame in self._stream_audio_frames_from_iterator(
                    chunks(), strip_wav_header=True, context_id=context_id):
                yield frame
        finally:
            if proc.returncode is None:
                proc.kill()   # interrupted mid-answer
            await proc.wait()


class Brain(FrameProcessor):
    """Answers each transcript; barge-in: the caller starting to speak while
    the bot speaks interrupts it (the transport turns that into a Clear)."""

    def __init__(self, say=print):
        super().__init__()
        self.say = say
        self.heard: list[str] = []
        self.said: list[str] = []
        self.cleared: list[PlaybackClearedFrame] = []
        self._bot_speaking = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            reply = answer(frame.text)
            self.heard.append(frame.text)
            self.said.append(reply)
            self.say(f"bot heard: {frame.text!r}\nbot says:  {reply!r}")
            await self.push_frame(TTSSpeakFrame(reply))
            return
        if isinstance(frame, (BotStartedSpeakingFrame, BotStoppedSpeakingFrame)):
            self._bot_speaking = isinstance(frame, BotStartedSpeakingFrame)
        elif isinstance(frame, VADUserStartedSpeakingFrame) and self._bot_speaking:
            self.say("bot: caller barged in, stopping")
            await self.broadcast_interruption()
        elif isinstance(frame, PlaybackClearedFrame):
            self.cleared.append(frame)
            self.say(f"bot: the caller heard {frame.heard_ms} ms of it, {frame.dropped_ms} ms dropped")
        await self.push_frame(frame, direction)


async def bot(call: CallStream, brain: Brain | None = None, observers=()) -> PipelineWorker:
    logger.info(f"call {call.uuid} from {call.start.caller or 'unknown'} metadata={call.metadata}")
    if call.sample_rate != ASR_RATE:   # the gateway converts: ask for it when starting the stream
        raise ValueError(f"the stream is at {call.sample_rate} Hz; start it with sample_rate={ASR_RATE}")
    transport = SmartStreamTransport(call)
    stt, tts = await asyncio.to_thread(PocketsphinxSTTService), EspeakTTSService()
    pipeline = Pipeline([
        transport.input(),
        # 0.6 s of silence ends a turn: espeak's pauses between words are shorter.
        VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.6))),
        stt,
        brain or Brain(),
        tts,
        transport.output(),
    ])
    return PipelineWorker(pipeline, observers=list(observers),
                          params=PipelineParams(audio_in_sample_rate=ASR_RATE, audio_out_sample_rate=ASR_RATE))


if __name__ == "__main__":
    main(bot, description="SmartStream offline voice bot")
