"""SmartStream echo server: a minimal AI server to copy and start from.

Echoes the caller's audio back after --delay-ms, acknowledges payloads, and
demonstrates marks (one per ~1 s echoed), barge-in (DTMF "#": Clear) and
hangup (DTMF "*").

    python -m examples.echo_server --listen 127.0.0.1:50051 --delay-ms 500
"""
import argparse
import asyncio
import logging
import os
import signal
import sys

import grpc

try:
    from smartstream.v1 import smartstream_pb2 as pb, smartstream_pb2_grpc as pb_grpc
except ImportError:  # `python examples/echo_server.py` from a checkout, without PYTHONPATH
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from smartstream.v1 import smartstream_pb2 as pb, smartstream_pb2_grpc as pb_grpc

log = logging.getLogger("echo_server")
CHUNK_MS = 100         # coalesce 20 ms frames: the gateway queues and paces playback itself
CHUNKS_PER_MARK = 10   # a Mark after every ~1 s of echoed audio


class EchoCall:
    """State of one call (= one gRPC stream)."""

    def __init__(self, start, delay_s):
        self.start, self.delay_s = start, delay_s
        self.rate = start.sample_rate or 16000
        self.chunk_bytes = self.rate * 2 * CHUNK_MS // 1000  # PCM16 mono
        self.out = asyncio.Queue()  # ServerMessages to send; None ends the RPC
        self.chunks = self.marks = 0
        self.end_reason = "cancelled"
        self._start_echo()

    def _start_echo(self):
        self.pending = asyncio.Queue()  # (due time, pcm) of inbound frames
        self.echo_task = asyncio.create_task(self._echo(self.pending))

    def send(self, **msg):
        self.out.put_nowait(pb.ServerMessage(**msg))

    async def _echo(self, pending):
        loop, buf = asyncio.get_running_loop(), bytearray()
        while True:
            due, pcm = await pending.get()
            # Sleep to an absolute deadline (arrival + delay): no drift.
            await asyncio.sleep(due - loop.time())
            buf += pcm
            while len(buf) >= self.chunk_bytes:
                self.send(audio=pb.Audio(pcm=bytes(buf[:self.chunk_bytes]), sample_rate=self.rate))
                del buf[:self.chunk_bytes]
                self.chunks += 1
                if self.chunks % CHUNKS_PER_MARK == 0:
                    self.marks += 1
                    self.send(mark=pb.Mark(name=f"echo-{self.marks}"))

    async def read(self, requests):
        try:
            await self._read(requests)
        finally:
            self.out.put_nowait(None)  # whatever ended the request stream ends the RPC

    async def _read(self, requests):
        loop = asyncio.get_running_loop()
        async for m in requests:
            kind = m.WhichOneof("msg")
            if kind == "audio" and m.audio.track != pb.TRACK_OUTBOUND:  # never echo our own echo
                self.pending.put_nowait((loop.time() + self.delay_s, m.audio.pcm))
            elif kind == "payload":
                self.send(event=pb.Event(name="payload_ack", data=m.payload.data))
            elif kind == "dtmf" and m.dtmf.digit == "#":
                # Barge-in: forget our own unsent echo too, then drop the gateway's queue.
                self.echo_task.cancel()
                self._start_echo()
                log.info("call=%s dtmf # -> Clear", self.start.call_uuid)
                self.send(clear=pb.Clear())
            elif kind == "dtmf" and m.dtmf.digit == "*":
                log.info("call=%s dtmf * -> Hangup", self.start.call_uuid)
                self.send(hangup=pb.Hangup(cause="NORMAL_CLEARING"))
            elif kind == "mark":
                log.info("call=%s MarkReached %s cleared=%s", self.start.call_uuid, m.mark.name, m.mark.cleared)
            elif kind == "cleared":
                log.info("call=%s PlaybackCleared dropped_ms=%d", self.start.call_uuid, m.cleared.dropped_ms)
            elif kind == "end":
                self.end_reason = pb.StreamEnd.Reason.Name(m.end.reason) + (f" ({m.end.detail})" if m.end.detail else "")
                break


class EchoServicer(pb_grpc.AIStreamServicer):
    def __init__(self, delay_s):
        self.delay_s = delay_s

    async def Stream(self, requests, context):
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("msg") != "start":
            got = first.WhichOneof("msg") if first else "end of stream"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"first message must be StreamStart, got {got}")
        s = first.start
        log.info("stream start call=%s rate=%d channel_rate=%d codec=%s resumed=%s",
                 s.call_uuid, s.sample_rate, s.channel_sample_rate, s.codec, s.resumed)
        call = EchoCall(s, self.delay_s)
        reader = asyncio.create_task(call.read(requests))
        try:
            # One writer (this generator) keeps messages in order; gRPC allows one write at a time.
            while (msg := await call.out.get()) is not None:
                yield msg
        finally:  # StreamEnd, client cancel or server shutdown
            reader.cancel()
            call.echo_task.cancel()
            log.info("stream end call=%s reason=%s echoed=%.1fs marks=%d",
                     s.call_uuid, call.end_reason, call.chunks * CHUNK_MS / 1000, call.marks)


async def serve(listen, delay_ms):
    # No SO_REUSEPORT: a second server on a busy port fails instead of sharing it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_AIStreamServicer_to_server(EchoServicer(delay_ms / 1000), server)
    server.add_insecure_port(listen)
    await server.start()
    log.info("listening on %s, echo delay %d ms", listen, delay_ms)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop(grace=5)  # open calls get 5 s to end, then are cancelled
    # grpc may still be finishing cancelled calls in its own tasks; let them end
    # instead of having asyncio.run() cancel them (grpc would log a traceback).
    if rest := asyncio.all_tasks() - {asyncio.current_task()}:
        await asyncio.wait(rest, timeout=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default=os.environ.get("SMARTSTREAM_ECHO_LISTEN", "127.0.0.1:50051"),
                   help="host:port (default: $SMARTSTREAM_ECHO_LISTEN or 127.0.0.1:50051)")
    p.add_argument("--delay-ms", type=int, default=500, help="echo delay (default 500)")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args()
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(a.listen, a.delay_ms))


if __name__ == "__main__":
    main()
