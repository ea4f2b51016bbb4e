"""A Pipecat bot on a SmartStream call, in the shape of Pipecat's own examples.

    pip install 'smartstream[pipecat]'
    python examples/pipecat_bot.py --listen 127.0.0.1:50051

The Parrot stands where STT -> LLM -> TTS go in a real bot: it says back
what the caller says. DTMF "#" interrupts it (the gateway drops what was
queued), "*" ends the pipeline (the call is hung up once the caller heard
the rest). examples/offline_bot.py is the same with real speech parts.
"""
import os
import sys

from loguru import logger
from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, InputDTMFFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

try:
    from smartstream.pipecat import CallStream, PlaybackClearedFrame, SmartStreamParams, SmartStreamTransport, main
except ImportError:  # `python examples/pipecat_bot.py` from a checkout, without PYTHONPATH
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from smartstream.pipecat import CallStream, PlaybackClearedFrame, SmartStreamParams, SmartStreamTransport, main


class Parrot(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(OutputAudioRawFrame(frame.audio, frame.sample_rate, frame.num_channels))
        elif isinstance(frame, InputDTMFFrame) and frame.button == "#":
            await self.broadcast_interruption()
        elif isinstance(frame, InputDTMFFrame) and frame.button == "*":
            await self.push_frame(EndFrame())
        elif isinstance(frame, PlaybackClearedFrame):
            logger.info(f"interrupted: the caller heard {frame.heard_ms} ms, {frame.dropped_ms} ms dropped")
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)


async def bot(call: CallStream) -> PipelineWorker:
    logger.info(f"call {call.uuid} from {call.start.caller}, metadata {call.metadata}")
    transport = SmartStreamTransport(call, SmartStreamParams(end_action="hangup"))
    pipeline = Pipeline([transport.input(), Parrot(), transport.output()])
    return PipelineWorker(pipeline, params=PipelineParams(
        audio_in_sample_rate=call.sample_rate, audio_out_sample_rate=call.sample_rate))


if __name__ == "__main__":
    main(bot)
