"""The bolt-on design SmartStream replaces, as a gateway process for
benchmarks/macro.py: audio as base64 in JSON, Twilio Media Streams' message
format, over one WebSocket per call (as mod_audio_fork and Twilio do).

    python3 benchmarks/ws_baseline.py --pool-path P --pool-slots N --summary FILE

It takes the audio exactly as cheaply as the SmartStream daemon does (the
media-bug copy is modelled by the same shared-memory pool: Pool.open, watch,
one drain of every ring each 20 ms), so the comparison is of what happens
after: per frame a base64 encode, a JSON message, a WebSocket frame and a
write on the call's own socket. Written as fast as that design allows: the
message is one f-string (the format is fixed), no compression, and a send
only waits when the socket's buffer is full. The extra field capture_ns
carries the frame's capture time so the sink can measure latency.

On SIGTERM it writes FILE (JSON): frames sent and every tick as (monotonic
ns, lateness in microseconds), lateness measured as the daemon measures it.
"""
import argparse
import asyncio
import base64
import json
import signal
import time

import uvloop
from websockets.asyncio.client import connect

from smartstream import _ring

CADENCE = 0.020


class Call:
    """One call's WebSocket: frames drained before it is open wait in a list."""

    def __init__(self, info: dict):
        self.uuid, self.rate = info["uuid"], info["channel_rate"]
        self.sid = "MZ" + self.uuid
        self.seq = 0
        self.ws = None
        self.pending: list[str] = []
        self.ended = False
        self.task = asyncio.ensure_future(self.open(info["target"]))

    def event(self, body: str) -> str:
        self.seq += 1
        return f'{{"event":{body},"sequenceNumber":"{self.seq}","streamSid":"{self.sid}"}}'

    async def open(self, target: str) -> None:
        ws = await connect(f"ws://{target}/", compression=None, max_queue=None)
        start = self.event(
            f'"start","start":{{"streamSid":"{self.sid}","callSid":"{self.uuid}","tracks":["inbound"],'
            f'"mediaFormat":{{"encoding":"audio/x-l16","sampleRate":{self.rate},"channels":1}}}}')
        await ws.send(start)
        # Ticks keep adding to pending while a send waits; self.ws is set only
        # once it is empty, so frames stay in order.
        while self.pending:
            backlog, self.pending = self.pending, []
            for m in backlog:
                await ws.send(m)
        self.ws = ws
        if self.ended:
            await self.close()

    def media(self, seq: int, ts_ns: int, pcm: bytes) -> str:
        ms = seq * 20
        return self.event(
            f'"media","media":{{"track":"inbound","chunk":"{seq + 1}","timestamp":"{ms}",'
            f'"payload":"{base64.b64encode(pcm).decode()}"}},"capture_ns":"{ts_ns}"')

    async def send(self, messages: list[str]) -> None:
        for m in messages:
            await self.ws.send(m)

    async def close(self) -> None:
        await self.ws.send(self.event(f'"stop","stop":{{"callSid":"{self.uuid}"}}'))
        await self.ws.close()


class Gateway:
    def __init__(self, pool_path: str, slots: int):
        self.pool = _ring.Pool.open(pool_path, slots)
        self.batch = _ring.Batch()
        self.calls: dict[int, Call] = {}
        self.frames = 0
        self.ticks: list[tuple[int, int]] = []   # (monotonic ns, lateness us)
        self.background: set[asyncio.Task] = set()

    async def run(self) -> None:
        due = time.monotonic() + CADENCE
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            late = time.monotonic() - due
            self.ticks.append((time.monotonic_ns(), int(max(late, 0.0) * 1e6)))
            await self.tick()
            due += CADENCE
            if late > CADENCE:   # fell behind: skip, do not burst (as the daemon does)
                due = time.monotonic() + CADENCE

    async def tick(self) -> None:
        pool = self.pool
        pool.heartbeat()
        changes = pool.scan()
        for slot, gen, state in changes:
            if state == _ring.SLOT_ACTIVE and slot not in self.calls:
                pool.watch(slot, gen)
                self.calls[slot] = Call(pool.slot_info(slot))
        out: dict[Call, list[str]] = {}
        if pool.drain(self.batch):
            for slot, type_, track, seq, ts, pcm in self.batch.records():
                if type_ == _ring.REC_AUDIO:
                    call = self.calls[slot]
                    out.setdefault(call, []).append(call.media(seq, ts, pcm))
        for call, messages in out.items():
            self.frames += len(messages)
            if call.ws is None:
                call.pending += messages
            else:
                await call.send(messages)
        for slot, gen, state in changes:
            if state in (_ring.SLOT_CLOSING, _ring.SLOT_FREE) and slot in self.calls:
                self.hang_up(slot, gen)

    def hang_up(self, slot: int, gen: int) -> None:
        call = self.calls.pop(slot)
        call.ended = True
        if call.ws is not None:
            task = asyncio.ensure_future(call.close())
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        try:
            self.pool.free_slot(slot, gen)
        except _ring.SlotError:
            self.pool.unwatch(slot)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool-path", required=True)
    ap.add_argument("--pool-slots", type=int, default=256)
    ap.add_argument("--summary", required=True)
    args = ap.parse_args()
    gw = Gateway(args.pool_path, args.pool_slots)
    task = asyncio.ensure_future(gw.run())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    task.cancel()
    with open(args.summary, "w") as f:
        json.dump(dict(frames=gw.frames, ticks=gw.ticks), f)
    gw.pool.close()


if __name__ == "__main__":
    uvloop.run(main())
