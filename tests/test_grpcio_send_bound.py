"""The grpcio transport's send queue is bounded: a server that stops reading
costs its stream a RESOURCE_EXHAUSTED close (retried and resumed by the call),
not the daemon its memory (issue 13). A real grpc.aio server that never reads."""
from __future__ import annotations

import asyncio

import grpc

from smartstream.config import Config
from smartstream.target import parse_target
from smartstream.transport import grpcio
from smartstream.v1 import smartstream_pb2 as pb
from smartstream.v1 import smartstream_pb2_grpc as pb_grpc


class NeverReads(pb_grpc.AIStreamServicer):
    async def Stream(self, request_iterator, context):
        await asyncio.Event().wait()


class Handler:
    def __init__(self):
        self.closed = asyncio.get_running_loop().create_future()

    def on_message(self, msg): ...

    def on_reached(self): ...

    def on_closed(self, code, detail):
        self.closed.set_result((code, detail))


async def test_a_server_that_stops_reading_gets_its_stream_closed_resource_exhausted():
    server = grpc.aio.server()
    pb_grpc.add_AIStreamServicer_to_server(NeverReads(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    transport = grpcio.GrpcioTransport(Config())
    try:
        handler = Handler()
        stream = transport.open_stream(parse_target(f"127.0.0.1:{port}"), handler)
        frame = pb.GatewayMessage(audio=pb.AudioFrame(track=pb.TRACK_INBOUND, pcm=b"\0" * 640))
        for _ in range(grpcio.SEND_QUEUE_MAX + 10):   # what 20 s of both tracks would queue
            stream.send(frame)
        code, detail = await asyncio.wait_for(handler.closed, 5)
        assert code == "RESOURCE_EXHAUSTED" and "not reading" in detail
        stream.send(frame)   # a closed stream takes nothing more, quietly
    finally:
        await transport.close()
        await server.stop(0)
