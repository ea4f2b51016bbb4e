"""The reference transport: grpcio's asyncio API, one write() per message.

Channels are shared per target and streams multiplexed over them, at most
streams_per_channel each, so a server's concurrent-stream limit is never hit
silently: the next stream opens a new connection instead of queueing.
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from ..config import Config, TargetSettings
from ..logs import peer_text
from ..target import Target
from ..v1 import smartstream_pb2 as pb
from ..v1 import smartstream_pb2_grpc as pb_grpc
from . import Stream, StreamHandler, Transport

log = logging.getLogger("smartstream.transport")

_FINISH = object()
SEND_QUEUE_MAX = 2000   # messages: 20 s of both tracks' frames, far past the resume window


class _Detached:
    """The handler of a retired stream: what it still receives goes nowhere."""

    def on_message(self, msg) -> None: ...
    def on_reached(self) -> None: ...
    def on_closed(self, code: str, detail: str) -> None: ...


_DETACHED = _Detached()


def _credentials(ts: TargetSettings) -> grpc.ChannelCredentials:
    def read(path):
        with open(path, "rb") as f:
            return f.read()
    return grpc.ssl_channel_credentials(
        root_certificates=read(ts.ca_file) if ts.ca_file else None,
        private_key=read(ts.key_file) if ts.key_file else None,
        certificate_chain=read(ts.cert_file) if ts.cert_file else None)


class _Channel:
    def __init__(self, config: Config, target: Target, ts: TargetSettings):
        options = [
            ("grpc.keepalive_time_ms", config.keepalive_ms),
            ("grpc.keepalive_timeout_ms", config.keepalive_timeout_ms),
            ("grpc.http2.max_pings_without_data", 0),
            # Our own backoff paces reconnects; grpc's default (up to 120 s) would delay resumes.
            ("grpc.initial_reconnect_backoff_ms", config.retry_initial_ms),
            ("grpc.min_reconnect_backoff_ms", config.retry_initial_ms),
            ("grpc.max_reconnect_backoff_ms", config.retry_limit_ms()),
            # Without this, channels to one target share a connection and the
            # per-connection stream limit would apply to all of them together.
            ("grpc.use_local_subchannel_pool", 1),
            # An AI server's response headers, as the fast transport caps them (an HPACK bomb).
            ("grpc.max_metadata_size", 16 << 10),
        ]
        if ts.server_name:
            options.append(("grpc.ssl_target_name_override", ts.server_name))
        if ts.tls:
            self.channel = grpc.aio.secure_channel(target.authority, _credentials(ts), options)
        else:
            self.channel = grpc.aio.insecure_channel(target.authority, options)
        self.stub = pb_grpc.AIStreamStub(self.channel)
        self.streams = 0


class GrpcioStream(Stream):
    def __init__(self, transport: "GrpcioTransport", ch: _Channel, handler: StreamHandler,
                 metadata):
        self._transport, self._ch, self._handler = transport, ch, handler
        self._queue: asyncio.Queue = asyncio.Queue()
        self._call = ch.stub.Stream(metadata=metadata)
        self._closed = False
        self.reached = ch.channel.get_state() == grpc.ChannelConnectivity.READY
        self._tasks = [asyncio.ensure_future(self._write()), asyncio.ensure_future(self._read())]
        if not self.reached:
            self._tasks.append(asyncio.ensure_future(self._until_ready()))

    async def _until_ready(self):
        try:
            await self._call.wait_for_connection()   # our headers went out on a connection
        except grpc.aio.AioRpcError:
            return   # the read side reports the failure
        self.reached = True
        self._handler.on_reached()

    def route(self, router, slot: int, uplink) -> None:
        router.route(slot, uplink, python=True)

    def send(self, msg: pb.GatewayMessage) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= SEND_QUEUE_MAX:   # the server is not reading: retried, resumed
            self._call.cancel()
            self._close("RESOURCE_EXHAUSTED", f"over {SEND_QUEUE_MAX} messages queued to send: "
                        "the server is not reading", notify=True, later=True)
            return
        self._queue.put_nowait(msg)

    def send_audio(self, track: int, seq: int, capture_ns: int, pcm: bytes,
                   synthesized: bool = False) -> None:
        self.send(pb.GatewayMessage(audio=pb.AudioFrame(
            track=track, sequence=seq, capture_ns=capture_ns, pcm=pcm, synthesized=synthesized)))

    def finish(self) -> None:
        if not self._closed:
            self._queue.put_nowait(_FINISH)

    def cancel(self, detail: str) -> None:
        if not self._closed:
            self._call.cancel()
            self._close("CANCELLED", detail, notify=False)

    def retire(self, last: pb.GatewayMessage, grace_s: float) -> None:
        if self._closed:
            return
        self.send(last)
        self.finish()
        self._handler = _DETACHED
        asyncio.get_running_loop().call_later(grace_s, self.cancel, "retired")

    async def _write(self):
        try:
            while True:
                msg = await self._queue.get()
                if msg is _FINISH:
                    await self._call.done_writing()
                    return
                await self._call.write(msg)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            pass  # the read side sees the failure and reports it once

    async def _read(self):
        try:
            async for msg in self._call:
                if msg is None:   # grpcio's word for bytes that are no ServerMessage
                    self._call.cancel()
                    self._close("INTERNAL", "undecodable ServerMessage from the AI server", notify=True)
                    return
                self._handler.on_message(msg)
            code = await self._call.code()
            self._close(code.name, peer_text(await self._call.details() or ""), notify=True)
        except grpc.aio.AioRpcError as e:
            self._close(e.code().name, peer_text(e.details() or ""), notify=True)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a handler bug must not kill the transport
            log.exception("stream handler failed")
            self._call.cancel()
            self._close("INTERNAL", f"handler error: {e}", notify=True)

    def _close(self, code: str, detail: str, notify: bool, later: bool = False):
        """later: the handler is told from the loop, not inside its own send()."""
        if self._closed:
            return
        self._closed = True
        self._ch.streams -= 1
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()
        if notify and later:
            asyncio.get_running_loop().call_soon(lambda: self._handler.on_closed(code, detail))
        elif notify:
            self._handler.on_closed(code, detail)


class GrpcioTransport(Transport):
    def __init__(self, config: Config):
        self.config = config
        self._channels: dict[tuple[str, bool], list[_Channel]] = {}

    def open_stream(self, target: Target, handler: StreamHandler, tls: bool = False) -> Stream:
        addr, ts = self.address(target, tls)
        chans = self._channels.setdefault((addr.authority, ts.tls), [])
        ch = next((c for c in chans if c.streams < self.config.streams_per_channel), None)
        if ch is None:
            ch = _Channel(self.config, addr, ts)
            chans.append(ch)
            log.info("new connection to %s (%d for this address)%s", addr, len(chans),
                     f" of {target}" if addr is not target else "")
        ch.streams += 1
        metadata = (("authorization", f"Bearer {ts.token}"),) if ts.token else None
        return GrpcioStream(self, ch, handler, metadata)

    async def close(self) -> None:
        for chans in self._channels.values():
            for ch in chans:
                await ch.channel.close(grace=1.0)
        self._channels.clear()
