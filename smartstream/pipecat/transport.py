"""SmartStreamTransport: a Pipecat transport for one SmartStream call, the
way FastAPIWebsocketTransport is one for a websocket.

In: caller audio as InputAudioRawFrame at the stream's rate (bytes as the
gateway sent them; frame.metadata has the frame's sequence, capture_ns and
synthesized flag), DTMF as InputDTMFFrame, payloads as
InputTransportMessageFrame, playout reports as the frames of .frames.
Out: audio as Audio messages, paced to real time plus a small lead so that
Pipecat's notion of "the bot is speaking" stays true and an interruption
(InterruptionFrame -> Clear) has little to drop; PlaybackMarkFrame -> Mark in
order with the audio; OutputDTMFFrame -> SendDtmf when granted.
EndFrame: once the caller has heard the last sample, Hangup (or Done, see
SmartStreamParams.end_action).
"""
from __future__ import annotations

import asyncio
import time
from typing import Literal

from google.protobuf.json_format import MessageToDict
from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    CancelFrame, EndFrame, Frame, InputAudioRawFrame, InputDTMFFrame, InputTransportMessageFrame,
    InterruptionFrame, OutputAudioRawFrame, OutputDTMFFrame, OutputDTMFUrgentFrame, StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from smartstream.botkit import PLAYBACK_RATES, CallStream
from smartstream.v1 import smartstream_pb2 as pb

from .frames import PlaybackClearedFrame, PlaybackDrainedFrame, PlaybackMarkFrame, PlaybackMarkReachedFrame

END_MARK = "smartstream-end"


class SmartStreamParams(TransportParams):
    """TransportParams with audio on both ways, and:

    audio_out_lead_ms: how far ahead of playout audio is sent; the gateway's
        queue absorbs our timer's jitter with it, a Clear drops at most it.
    end_action: what an EndFrame does once playout is done: "hangup" ends
        the call (if the operator did not grant "hangup", the gateway refuses
        it and Done follows), "done" leaves the call to the dialplan.
    """
    audio_in_enabled: bool = True
    audio_out_enabled: bool = True
    audio_out_end_silence_secs: int = 0   # the gateway plays the queue to its end anyway
    audio_out_10ms_chunks: int = 2        # the gateway's 20 ms frame: a Clear cuts at most one
    audio_out_lead_ms: int = 200
    end_action: Literal["hangup", "done"] = "hangup"


class SmartStreamInputTransport(BaseInputTransport):
    def __init__(self, call: CallStream, params: SmartStreamParams, **kwargs):
        super().__init__(params, **kwargs)
        self._call = call
        self._receive_task = None

    async def start(self, frame: StartFrame):
        await super().start(frame)
        if not self._receive_task:
            self._receive_task = self.create_task(self._receive())
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        await self._stop_receiving()

    async def cancel(self, frame: CancelFrame):
        await super().cancel(frame)
        await self._stop_receiving()

    async def cleanup(self):
        await super().cleanup()
        await self._stop_receiving()

    async def _stop_receiving(self):
        if self._receive_task:
            await self.cancel_task(self._receive_task)
            self._receive_task = None

    async def _receive(self):
        while (m := await self._call.inbox.get()) is not None:
            await self._handle(m)

    async def _handle(self, m: pb.GatewayMessage):
        kind = m.WhichOneof("msg")
        if kind == "audio":
            await self._audio(m.audio)
        elif kind == "dtmf":
            try:
                await self.push_frame(InputDTMFFrame(KeypadEntry(m.dtmf.digit)))
            except ValueError:   # A-D: Pipecat's keypad has no such keys
                logger.warning(f"{self}: DTMF {m.dtmf.digit!r} has no Pipecat KeypadEntry, not passed on")
        elif kind == "payload":
            await self.broadcast_frame(InputTransportMessageFrame, message=MessageToDict(m.payload.data))
        elif kind == "mark":
            await self.push_frame(PlaybackMarkReachedFrame(mark=m.mark.name, cleared=m.mark.cleared))
        elif kind == "cleared":
            c = m.cleared
            await self.push_frame(PlaybackClearedFrame(dropped_ms=c.dropped_ms, heard_ms=c.heard_ms,
                                                       discarded_marks=list(c.discarded_marks)))
        elif kind == "drained":
            await self.push_frame(PlaybackDrainedFrame(played_ms=m.drained.played_ms,
                                                       last_mark=m.drained.last_mark))
        elif kind == "gap":
            logger.warning(f"{self}: {m.gap.count} caller frames lost from {m.gap.first_sequence} "
                           f"({pb.Gap.Reason.Name(m.gap.reason)})")
        elif kind == "refused":
            logger.warning(f"{self}: gateway refused {m.refused.message}: {m.refused.detail}")
            if m.refused.message == "hangup":   # not granted: leave the call to the dialplan
                self._call.send(done=pb.Done(reason="pipeline ended; hangup refused"))
        elif kind == "playback_dropped":
            logger.warning(f"{self}: the gateway's queue dropped {m.playback_dropped.dropped_ms} ms")
        elif kind != "end":
            logger.debug(f"{self}: {kind} not used by the transport")

    async def _audio(self, f: pb.AudioFrame):
        if not self._call.new_caller_frame(f):
            return
        frame = InputAudioRawFrame(audio=f.pcm, sample_rate=self._call.sample_rate, num_channels=1)
        # For latency work: capture_ns is CLOCK_MONOTONIC of the FreeSWITCH host.
        frame.metadata.update(sequence=f.sequence, capture_ns=f.capture_ns, synthesized=f.synthesized)
        await self.push_audio_frame(frame)


class SmartStreamOutputTransport(BaseOutputTransport):
    def __init__(self, call: CallStream, params: SmartStreamParams, **kwargs):
        super().__init__(params, **kwargs)
        self._call = call
        self._params: SmartStreamParams = params
        self._play_end = 0.0   # monotonic time the gateway will have played all we sent

    async def setup(self, setup: FrameProcessorSetup):
        await super().setup(setup)
        if self.sample_rate not in PLAYBACK_RATES:
            raise ValueError(f"audio_out_sample_rate {self.sample_rate}: SmartStream plays {PLAYBACK_RATES}")

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame):
        await super().stop(frame)   # the media sender has sent all queued audio
        await self._call.play_out(END_MARK)
        if self._params.end_action == "hangup":
            self._call.send(hangup=pb.Hangup(cause="NORMAL_CLEARING"))
        else:
            self._call.send(done=pb.Done(reason="pipeline ended"))

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._call.send(clear=pb.Clear())
            self._play_end = 0.0

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if self._call.ended.is_set():
            return False
        self._call.send(audio=pb.Audio(pcm=frame.audio, sample_rate=self.sample_rate))
        await self._pace(len(frame.audio) / (2 * self.sample_rate))
        return True

    async def _pace(self, seconds: float):
        now = time.monotonic()
        self._play_end = max(self._play_end, now) + seconds
        ahead = self._play_end - now - self._params.audio_out_lead_ms / 1000
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def write_transport_frame(self, frame: Frame):
        if isinstance(frame, PlaybackMarkFrame):   # reached here after the audio before it
            self._call.send(mark=pb.Mark(name=frame.mark))

    def _supports_native_dtmf(self) -> bool:
        return "send_dtmf" in self._call.start.allowed_actions

    async def _write_dtmf_native(self, frame: OutputDTMFFrame | OutputDTMFUrgentFrame):
        self._call.send(send_dtmf=pb.SendDtmf(digits="".join(b.value for b in frame.buttons)))


class SmartStreamTransport(BaseTransport):
    """Transport for one call. `call` has the StreamStart (`call.start`:
    call_uuid, caller, callee, codec, rates, allowed_actions, resumed) and its
    metadata as a dict (`call.metadata`)."""

    def __init__(self, call: CallStream, params: SmartStreamParams | None = None, **kwargs):
        super().__init__(**kwargs)
        self.call = call
        params = params or SmartStreamParams()
        if params.audio_in_sample_rate is None:
            params.audio_in_sample_rate = call.sample_rate   # caller audio is at the stream's rate
        self._input = SmartStreamInputTransport(call, params, name=self._input_name)
        self._output = SmartStreamOutputTransport(call, params, name=self._output_name)

    def input(self) -> SmartStreamInputTransport:
        return self._input

    def output(self) -> SmartStreamOutputTransport:
        return self._output
