"""The AI-server side of the contract, for bot adapters (Pipecat, the Twilio
bridge): a grpc.aio AIStream server that hands each call, as a CallStream,
to an async handler, and keeps the RPC open until the gateway ends it (ending
it ourselves with OK would be read as a drain and resumed). A stream that
breaks and comes back resumed (a daemon restart, a reconnect) within the
resume window continues the same CallStream: the bot never notices."""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.json_format import MessageToDict

from smartstream.v1 import smartstream_pb2 as pb
from smartstream.v1 import smartstream_pb2_grpc as pb_grpc

log = logging.getLogger("smartstream.botkit")
PLAYBACK_RATES = (8000, 16000, 24000, 48000)   # what Audio.sample_rate may be
AUDIO_MAX = 1 << 19   # bytes of PCM per Audio message, well under the gateway's 1 MiB
RESUME_S = 2.0        # the gateway's resume window by default: a stream gone longer is not coming back
BOT_GRACE_S = 5.0     # for a bot to wind down once its call ended


class CallStream:
    """One call as the bot sees it, across the streams that carry it: the
    latest StreamStart, what arrives after it (`inbox`, None once the call's
    stream ended for good) and what we send (`send`)."""

    def __init__(self, start: pb.StreamStart):
        self.start = start
        self.metadata: dict = MessageToDict(start.metadata)
        self.sample_rate = start.sample_rate or 16000
        self.inbox: asyncio.Queue[pb.GatewayMessage | None] = asyncio.Queue()
        self.end: pb.StreamEnd | None = None
        self.ended = asyncio.Event()
        self.finished = False   # Hangup or Done sent: the bot is through with the call
        self._out: asyncio.Queue[pb.ServerMessage | object] = asyncio.Queue()   # and RPC ends
        self._marks: dict[str, asyncio.Future] = {}
        self._next_seq = start.next_sequence

    @property
    def uuid(self) -> str:
        return self.start.call_uuid

    def send(self, **msg) -> None:
        if not self.ended.is_set():
            self.finished |= "hangup" in msg or "done" in msg
            self._out.put_nowait(pb.ServerMessage(**msg))

    def new_caller_frame(self, f: pb.AudioFrame) -> bool:
        """True for caller audio not seen before: not the outbound track (our
        own output), not a frame a resumed stream replays (at-least-once)."""
        if f.track == pb.TRACK_OUTBOUND or f.sequence < self._next_seq:
            return False
        self._next_seq = f.sequence + 1
        return True

    def send_audio(self, pcm: bytes, sample_rate: int) -> None:
        """Audio of any length, in messages under the gateway's 1 MiB limit."""
        for i in range(0, len(pcm), AUDIO_MAX):
            self.send(audio=pb.Audio(pcm=pcm[i:i + AUDIO_MAX], sample_rate=sample_rate))

    async def play_out(self, name: str) -> pb.MarkReached | None:
        """Queue a Mark and wait until playout reaches it: the MarkReached
        (cleared if a Clear dropped it), or None if the stream ended first."""
        fut = self._marks[name] = asyncio.get_running_loop().create_future()
        self.send(mark=pb.Mark(name=name))
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait({fut, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            self._marks.pop(name, None)
        return fut.result() if fut.done() else None

    async def _read(self, requests, rpc_done: object) -> None:
        try:
            async for m in requests:
                kind = m.WhichOneof("msg")
                if kind == "mark" and (fut := self._marks.get(m.mark.name)) and not fut.done():
                    fut.set_result(m.mark)
                elif kind == "end":
                    self.end = m.end
                self.inbox.put_nowait(m)
        finally:   # StreamEnd, the gateway half-closing, or the RPC broken
            self._out.put_nowait(rpc_done)

    def _finish(self) -> None:
        if not self.ended.is_set():
            self.ended.set()
            self.inbox.put_nowait(None)


Handler = Callable[[CallStream], Awaitable[None]]


class _Servicer(pb_grpc.AIStreamServicer):
    def __init__(self, handler: Handler):
        self.handler = handler
        self.calls: dict[str, tuple[CallStream, asyncio.Task]] = {}   # by uuid, while the bot runs
        self.streams: dict[str, int] = {}   # RPCs open per uuid: a resume may come before the break is seen

    async def Stream(self, requests, context):
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("msg") != "start":
            got = first.WhichOneof("msg") if first else "end of stream"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"first message must be StreamStart, got {got}")
        start = first.start
        if start.resumed and start.call_uuid in self.calls:
            call, bot = self.calls[start.call_uuid]
            call.start = start
        else:
            call = CallStream(start)
            bot = asyncio.create_task(self._run(call))
            self.calls[call.uuid] = (call, bot)
        log.info("call=%s start rate=%d resumed=%s", call.uuid, call.sample_rate, start.resumed)
        self.streams[call.uuid] = self.streams.get(call.uuid, 0) + 1
        rpc_done = object()   # this RPC's end in the queue, as others' may be left in it
        reader = asyncio.create_task(call._read(requests, rpc_done))
        try:
            # One writer (this generator) keeps messages in order.
            while (msg := await call._out.get()) is not rpc_done:
                if isinstance(msg, pb.ServerMessage):
                    yield msg
        finally:
            reader.cancel()
            self.streams[call.uuid] -= 1
            end = pb.StreamEnd.Reason.Name(call.end.reason) if call.end else "broken, may resume"
            log.info("call=%s stream end: %s", call.uuid, end)
            if call.end and call.end.reason != pb.StreamEnd.REASON_SHUTDOWN:
                self._finish(call, bot)
            else:   # the bot goes on; what it sends waits for the resumed stream
                asyncio.get_running_loop().call_later(RESUME_S, self._expire, call, bot)

    def _expire(self, call: CallStream, bot: asyncio.Task) -> None:
        if not self.streams.get(call.uuid) and not call.ended.is_set():
            log.info("call=%s: not resumed within %.0f s, ending its bot", call.uuid, RESUME_S)
            self._finish(call, bot)

    def _finish(self, call: CallStream, bot: asyncio.Task) -> None:
        call._finish()   # the handler sees `ended` and winds down; one that does not is cancelled
        asyncio.get_running_loop().call_later(BOT_GRACE_S, bot.cancel)
        if self.calls.get(call.uuid, (None,))[0] is call:
            del self.calls[call.uuid]
            self.streams.pop(call.uuid, None)

    async def _run(self, call: CallStream) -> None:
        try:
            await self.handler(call)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The call goes on without this bot rather than the process dying with it.
            log.exception("call=%s: the bot failed; sending Done", call.uuid)
            call.send(done=pb.Done(reason="bot failed"))


async def start_server(handler: Handler, listen: str = "127.0.0.1:0") -> tuple[grpc.aio.Server, int]:
    """A started AIStream server calling `handler` per stream, and its port."""
    # No SO_REUSEPORT: a second server on a busy port fails instead of sharing it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_AIStreamServicer_to_server(_Servicer(handler), server)
    port = server.add_insecure_port(listen)
    if not port:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return server, port


async def serve(handler: Handler, listen: str) -> None:
    """Serve until SIGINT/SIGTERM, then give open calls 5 s to end."""
    server, port = await start_server(handler, listen)
    log.info("listening on %s", listen.rsplit(":", 1)[0] + f":{port}")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=5)
