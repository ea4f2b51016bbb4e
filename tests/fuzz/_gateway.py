"""One live call in a real Gateway, for the fuzzers of what reaches a Call
from outside (server_message, payload_json). Import it inside
atheris.instrument_imports() so smartstream is instrumented.

Nothing is replaced: a real pool on /dev/shm (unlinked once mapped), the
module's side of one slot (ModuleStream, i.e. csrc/ss_stream.c), the
Gateway with its Router, Metrics and FastTransport, and per input a fresh
Call whose stream is a real FastStream on a real H2Connection. What differs
from production: the TCP connect never happens (its task is cancelled
before it runs, so the connection stays where every stream starts, opened
and not yet connected: frames queue in the H2Connection as they do then),
the stream's send() is spied on (`sent`), and the event loop's clock jumps
after each input so timers the input set run before the next one.
"""
import asyncio
import os

from smartstream import _ring
from smartstream.call import END_GRACE_S, Call
from smartstream.config import Config
from smartstream.gateway import Gateway
from smartstream.transport.fast import FastTransport
from smartstream.v1 import smartstream_pb2 as pb

from _common import check, shm_path


class _Loop(asyncio.SelectorEventLoop):
    """An event loop whose clock can be moved on: what a call schedules
    (fail()'s cancel after END_GRACE_S) runs at the end of the input that
    caused it, not a second of inputs later."""
    offset = 0.0

    def time(self):
        return super().time() + self.offset


class LiveCall:
    def __init__(self, name: str):
        path = shm_path(name)
        self.config = Config(pool_path=path, pool_slots=1)
        try:
            self.gw = Gateway(self.config)
        finally:
            if os.path.exists(path):
                os.unlink(path)
        self.pool = self.gw.pool
        self.ms = _ring.ModuleStream(self.pool, "fuzz-call", "127.0.0.1:1", 16000, tracks=3)
        self.slot, self.gen = self.ms.slot, self.ms.generation
        self.info = self.pool.slot_info(self.slot)
        self.pool.watch(self.slot, self.gen)
        self.loop = _Loop()
        self.call = self.conn = self.stream = self.sid = None
        self.sent = []

    def run(self, coro):
        """One input, inside the running loop a Call expects (fail() schedules);
        then the clock jumps past every grace period and what was due runs."""
        self.loop.run_until_complete(coro)
        self.loop.offset += END_GRACE_S + 1
        self.loop.run_until_complete(asyncio.sleep(0))

    async def new_call(self) -> Call:
        """A fresh call, streaming, as Gateway._open_call leaves it."""
        gw = self.gw
        if self.call is not None:   # the last input's call: over, as Gateway._close_call does
            self.call.end(pb.StreamEnd.REASON_HANGUP, "fuzz input done")
            gw._busy.discard(self.call)
        gw.transport = FastTransport(self.config)   # a new connection: nothing carried over
        call = Call(gw, self.info, resumed=False)
        gw.calls[self.slot] = call
        gw.router.route(self.slot, call.uplink)
        call.connect()
        [conns] = gw.transport._conns.values()
        [conn] = conns
        conn._task.cancel()   # no TCP connect: the connection stays opened, not connected
        await asyncio.sleep(0)
        conn.connected = True   # ... but the call takes it for connected: it streams
        call.on_reached()
        check(call.state == "streaming", lambda: f"new call is {call.state}")
        [(sid, stream)] = conn.streams.items()
        self.sent = []
        send = stream.send

        def recording_send(msg):   # what the Call queued, in order, then the real send
            self.sent.append(msg)
            send(msg)
        stream.send = recording_send
        self.call, self.conn, self.sid, self.stream = call, conn, sid, stream
        return call

    def take_control(self) -> list[tuple[int, bytes]]:
        """Everything the daemon posted to the module since the last take."""
        out = []
        while (m := self.ms.take()) is not None:
            out.append(m)
        return out

    def dropped(self, reason: str) -> float:
        return self.gw.metrics.registry.get_sample_value(
            "smartstream_frames_dropped_total", {"reason": reason}) or 0.0

    def reset_tts(self) -> None:
        self.pool.clear_tts(self.slot, self.gen)
