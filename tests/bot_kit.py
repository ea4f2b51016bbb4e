"""For the bot tests: a bot server on loopback for the length of a test, and
Pipecat processors that script a bot and record what reached it."""
from __future__ import annotations

import contextlib

from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame, StartFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from smartstream import botkit


@contextlib.asynccontextmanager
async def bot_server(handler: botkit.Handler):
    """host:port of a running AIStream server calling `handler` per call."""
    server, port = await botkit.start_server(handler)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


class ScriptedBot(FrameProcessor):
    """Says `utterance` (PCM16) at the start, then the frames in `after` (e.g. a
    mark, an EndFrame); records the caller's audio and every other frame that
    reaches it; interrupts itself after `interrupt_after` caller frames."""

    def __init__(self, utterance: bytes, rate: int, after: list[Frame] = (), interrupt_after: int = 0):
        super().__init__()
        self.utterance, self.rate, self.after, self.interrupt_after = utterance, rate, list(after), interrupt_after
        self.caller_audio = bytearray()
        self.caller_frames = 0
        self.seen: list[Frame] = []

    def of(self, cls) -> list:
        return [f for f in self.seen if isinstance(f, cls)]

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):   # consumed: the bot's output is its own
            self.caller_audio += frame.audio
            self.caller_frames += 1
            if self.caller_frames == self.interrupt_after:
                await self.broadcast_interruption()
            return
        self.seen.append(frame)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            for f in [OutputAudioRawFrame(self.utterance, self.rate, 1), *self.after]:
                await self.push_frame(f)


class SentAudio(FrameProcessor):
    """After the output transport: the audio it wrote, which it passes on."""

    def __init__(self):
        super().__init__()
        self.pcm = bytearray()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputAudioRawFrame):
            self.pcm += frame.audio
        await self.push_frame(frame, direction)
