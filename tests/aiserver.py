"""A real grpc.aio AI server for the tests: records every stream it gets and
lets a test script what it answers. It is a real server on loopback, not a fake."""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field

import grpc

from smartstream.v1 import smartstream_pb2 as pb
from smartstream.v1 import smartstream_pb2_grpc as pb_grpc


@dataclass
class Recorded:
    """One stream as the server saw it."""
    messages: list = field(default_factory=list)   # GatewayMessage, in order
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    status: str = ""
    last_ack: dict = field(default_factory=dict)   # track -> highest sequence acknowledged

    @property
    def start(self) -> pb.StreamStart:
        return self.messages[0].start

    @property
    def uuid(self) -> str:
        return self.start.call_uuid

    def kinds(self) -> list[str]:
        return [m.WhichOneof("msg") for m in self.messages]

    def frames(self, track=pb.TRACK_INBOUND) -> list[pb.AudioFrame]:
        return [m.audio for m in self.messages if m.HasField("audio") and m.audio.track == track]

    def gaps(self, track=pb.TRACK_INBOUND) -> list[pb.Gap]:
        return [m.gap for m in self.messages if m.HasField("gap") and m.gap.track == track]

    def send(self, **kw) -> None:
        self.outbox.put_nowait(pb.ServerMessage(**kw))


class AIServer(pb_grpc.AIStreamServicer):
    """Streams by call uuid (a resumed call adds a stream to its list), and
    each call's authorization header (the last stream's)."""

    def __init__(self, on_start=None, ack=False, streams=None, journal=None):
        """ack: acknowledge every frame as it arrives. streams: share another
        server's record (the same server started again). journal: a text file
        that gets a line per message received and per Ack written, so the
        record survives the server's process (tests/aiserver_proc.py)."""
        self.streams: dict[str, list[Recorded]] = {} if streams is None else streams
        self.ack = ack
        self.journal = journal
        self.count = 0
        self.auth: dict[str, str | None] = {}
        self.started = asyncio.Queue()
        self.on_start = on_start
        self.server = None
        self.port = 0

    async def Stream(self, request_iterator, context):
        rec = Recorded()
        auth = dict(context.invocation_metadata()).get("authorization")
        self.count += 1
        stream = self.count

        async def read():
            async for msg in request_iterator:
                rec.messages.append(msg)
                self._log(stream, msg=msg.SerializeToString().hex())
                if len(rec.messages) == 1:
                    self.streams.setdefault(msg.start.call_uuid, []).append(rec)
                    self.auth[msg.start.call_uuid] = auth
                    self.started.put_nowait(rec)
                    if self.on_start:
                        self.on_start(rec)
                elif self.ack and msg.HasField("audio"):
                    rec.send(ack=pb.Ack(track=msg.audio.track, sequence=msg.audio.sequence))
            rec.outbox.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (out := await rec.outbox.get()) is not None:
                if isinstance(out, grpc.StatusCode):
                    await context.abort(out, "test server aborts")
                await context.write(out)
                if out.HasField("ack"):   # acknowledged once written, not when queued
                    rec.last_ack[out.ack.track] = out.ack.sequence
                    self._log(stream, track=out.ack.track, ack=out.ack.sequence)
        finally:
            reader.cancel()
            rec.done.set()

    def _log(self, stream: int, **line) -> None:
        if self.journal:   # one write(2) per line: what a SIGKILL cannot take back
            self.journal.write(json.dumps({"stream": f"{os.getpid()}-{stream}", **line}) + "\n")
            self.journal.flush()

    async def start(self, port: int = 0, options=None) -> int:
        self.server = grpc.aio.server(options=options)
        pb_grpc.add_AIStreamServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        await self.server.start()
        return self.port

    async def stop(self, grace=None) -> None:
        await self.server.stop(grace)

    def all_frames(self, uuid: str, track=pb.TRACK_INBOUND) -> list[pb.AudioFrame]:
        return [f for rec in self.streams.get(uuid, []) for f in rec.frames(track)]
