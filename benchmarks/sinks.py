"""Cheap AI-server stand-ins for benchmarks/macro.py: they count audio frames
and sample hook-to-server latency, and must cost far less than the gateways
they measure (their own CPU is reported, so that can be checked).

    python3 benchmarks/sinks.py h2|ws --port P --status FILE [--sample-every K] [--reset-every K]

  h2  a raw asyncio HTTP/2 server for smartstream.v1.AIStream (both the fast
      and the grpcio transport): it splits DATA into gRPC messages, counts the
      audio ones (field 2 of GatewayMessage, first byte 0x12) and decodes
      every SAMPLE_EVERY-th one for AudioFrame.capture_ns. grpc.aio would
      spend more CPU than the gateway at 1000 calls.
  ws  a raw asyncio WebSocket server for the Twilio-style baseline: it counts
      text frames whose "event" is "media" by unmasking one byte, and unmasks
      and parses every SAMPLE_EVERY-th one for its capture_ns field.

Latency is the receive time minus the capture timestamp, both
CLOCK_MONOTONIC on this host; --sample-every 0 turns it off (a long soak
would otherwise grow the list). --reset-every K (h2 only) resets every K-th
stream with RST_STREAM CANCEL after its first message, as a crashing or
redeploying AI server would, so the gateway's cancel and resume paths run. The status file (JSON, rewritten every 250 ms
and on SIGTERM, which ends the sink) has frames, streams opened and ended,
latency_n and the sink's CPU seconds; the latency samples, in microseconds,
are appended to FILE.latency, one a line (read_latency reads them).

A frame's receive time is when its bytes reached the sink (the start of the
data_received that holds them), not when the sink's own parsing got to it.
"""
import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import os
import re
import signal
import time

import uvloop

from smartstream.v1 import smartstream_pb2 as pb

SAMPLE_EVERY = 16          # default of --sample-every
RST_STREAM, CANCEL = 3, 8
AUDIO_TAG = 0x12          # GatewayMessage.audio: field 2, length-delimited


class Stats:
    def __init__(self, sample_every: int = SAMPLE_EVERY, reset_every: int = 0):
        self.frames = self.opened = self.ended = self.reset = self.seen = 0
        self.sample_every, self.reset_every = sample_every, reset_every
        self.latency_us: list[int] = []   # samples not yet written
        self.latency_n = 0

    def sample(self) -> bool:
        self.seen += 1
        return self.sample_every > 0 and self.seen % self.sample_every == 0

    def dump(self, path: str) -> None:
        doc = dict(frames=self.frames, opened=self.opened, ended=self.ended, reset=self.reset,
                   latency_us=self.latency_us, latency_n=self.latency_n)
        write_status(path, doc)
        self.latency_n = doc["latency_n"]


def write_status(path: str, doc: dict) -> None:
    """Replace the status file with doc and its CPU seconds; move doc's pending
    latency_us samples to the end of path.latency, counted in latency_n.
    Rewriting every sample each time stalled the sink for milliseconds once
    thousands had piled up, and that stall was in the latency it measured."""
    pending = doc.pop("latency_us", [])
    if pending:
        with open(path + ".latency", "a" if doc.get("latency_n") else "w") as f:   # a new sink starts it anew
            f.write("".join(f"{v}\n" for v in pending))
        doc["latency_n"] = doc.get("latency_n", 0) + len(pending)
        pending.clear()
    t = os.times()
    with open(path + ".tmp", "w") as f:
        json.dump({**doc, "cpu_s": t.user + t.system}, f)
    os.replace(path + ".tmp", path)
    doc["latency_us"] = pending


def read_latency(path, start: int = 0, end: int | None = None) -> list[int]:
    """Samples start..end (in the order taken) of the sink whose status file is path."""
    try:
        with open(f"{path}.latency") as f:
            return [int(v) for v in itertools.islice(f, start, end)]
    except FileNotFoundError:   # no sample taken
        return []


def h2_frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big") + payload


# HPACK, no dynamic table: ":status: 200" is static entry 8; the rest are literals.
RESPONSE_HEADERS = b"\x88" + b"\x0f\x10\x10application/grpc"
TRAILERS = b"\x00\x0bgrpc-status\x010"
DATA, HEADERS, SETTINGS, PING, WINDOW_UPDATE = 0, 1, 4, 6, 8
END_STREAM, ACK, PADDED = 1, 1, 8


class H2Sink(asyncio.Protocol):
    """One client connection: all of its calls' streams."""

    def __init__(self, stats: Stats):
        self.stats, self.buf, self.unacked = stats, bytearray(), 0
        self.streams: dict[int, list] = {}   # sid -> [prefix bytes, bytes left of the message, body]

    def connection_made(self, transport):
        self.transport = transport
        # Stream windows at the maximum and the connection window 1 GiB up:
        # flow control never throttles the gateway.
        settings = ((3).to_bytes(2, "big") + (100000).to_bytes(4, "big")
                    + (4).to_bytes(2, "big") + (2**31 - 1).to_bytes(4, "big"))
        transport.write(h2_frame(SETTINGS, 0, 0, settings)
                        + h2_frame(WINDOW_UPDATE, 0, 0, (1 << 30).to_bytes(4, "big")))

    def data_received(self, data):
        now = time.monotonic_ns()
        buf = self.buf
        buf += data
        if buf.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
            del buf[:24]
        pos, out = 0, []
        while len(buf) - pos >= 9:
            n = int.from_bytes(buf[pos:pos + 3], "big")
            if len(buf) - pos < 9 + n:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            payload = bytes(buf[pos + 9:pos + 9 + n])
            pos += 9 + n
            if ftype == DATA:
                if flags & PADDED:
                    payload = payload[1:len(payload) - payload[0]]
                self.unacked += n
                self.messages(sid, payload, now)
            elif ftype == HEADERS and sid not in self.streams:
                self.streams[sid] = [b"", 0, b""]
                self.stats.opened += 1
                if self.stats.reset_every and self.stats.opened % self.stats.reset_every == 0:
                    self.streams.pop(sid)
                    self.stats.reset += 1
                    out.append(h2_frame(RST_STREAM, 0, sid, CANCEL.to_bytes(4, "big")))
                    continue
                out.append(h2_frame(HEADERS, 4, sid, RESPONSE_HEADERS))   # END_HEADERS
            elif ftype == SETTINGS and not flags & ACK:
                out.append(h2_frame(SETTINGS, ACK, 0))
            elif ftype == PING and not flags & ACK:
                out.append(h2_frame(PING, ACK, 0, payload))
            # (a stream reset above is no longer ours: no trailers on it)
            if ftype in (DATA, HEADERS) and flags & END_STREAM and self.streams.pop(sid, None):
                self.stats.ended += 1
                out.append(h2_frame(HEADERS, 4 | END_STREAM, sid, TRAILERS))
        del buf[:pos]
        if self.unacked >= 64 << 20:
            out.append(h2_frame(WINDOW_UPDATE, 0, 0, self.unacked.to_bytes(4, "big")))
            self.unacked = 0
        if out:
            self.transport.write(b"".join(out))

    def messages(self, sid: int, data: bytes, now: int) -> None:
        """Split one DATA payload into gRPC messages (5-byte prefix + protobuf);
        a message may span DATA frames and a frame may hold several."""
        st = self.streams.get(sid)
        if st is None:
            return
        stats, pos, end = self.stats, 0, len(data)
        while pos < end:
            if st[1] == 0:   # in a prefix
                take = min(5 - len(st[0]), end - pos)
                st[0] += data[pos:pos + take]
                pos += take
                if len(st[0]) == 5:
                    st[1] = int.from_bytes(st[0][1:], "big")
                    st[0], st[2] = b"", b""
                continue
            take = min(st[1], end - pos)
            st[2] += data[pos:pos + take]
            pos += take
            st[1] -= take
            if st[1] == 0:
                body = st[2]
                if body and body[0] == AUDIO_TAG:
                    stats.frames += 1
                    if stats.sample():
                        capture = pb.GatewayMessage.FromString(body).audio.capture_ns
                        stats.latency_us.append((now - capture) // 1000)


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CAPTURE = re.compile(rb'"capture_ns":"?(\d+)')


def ws_accept(buf: bytearray, transport) -> bool:
    """Answer a WebSocket upgrade once its request is whole (and take it out of buf)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", bytes(buf[:end])).group(1)
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    del buf[:end + 4]
    return True


class WsSink(asyncio.Protocol):
    """One WebSocket connection (one call): the handshake, then frames."""

    def __init__(self, stats: Stats):
        self.stats, self.buf, self.upgraded = stats, bytearray(), False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        now = time.monotonic_ns()
        buf = self.buf
        buf += data
        if not self.upgraded:
            if not ws_accept(buf, self.transport):
                return
            self.upgraded = True
            self.stats.opened += 1
        pos, stats = 0, self.stats
        while len(buf) - pos >= 6:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            hdr = 2
            if n == 126:
                n, hdr = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif n == 127:
                n, hdr = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if len(buf) - pos < hdr + 4 + n:
                break
            mask = buf[pos + hdr:pos + hdr + 4]
            start = pos + hdr + 4
            pos = start + n
            if opcode == 1 and n > 10 and buf[start + 10] ^ mask[10 % 4] == ord("m"):   # {"event":"media"
                stats.frames += 1
                if stats.sample():
                    body = (int.from_bytes(buf[start:pos], "big")
                            ^ int.from_bytes((bytes(mask) * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
                    capture = int(CAPTURE.search(body).group(1))
                    stats.latency_us.append((now - capture) // 1000)
            elif opcode == 8:   # close: answer it, the call is over
                stats.ended += 1
                self.transport.write(b"\x88\x02\x03\xe8")
                self.transport.close()
        del buf[:pos]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("h2", "ws"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--sample-every", type=int, default=SAMPLE_EVERY)
    ap.add_argument("--reset-every", type=int, default=0)
    args = ap.parse_args()
    stats, loop = Stats(args.sample_every, args.reset_every), asyncio.get_running_loop()
    proto = H2Sink if args.kind == "h2" else WsSink
    server = await loop.create_server(lambda: proto(stats), "127.0.0.1", args.port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stats.dump(args.status)   # ready
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except asyncio.TimeoutError:
            pass
        stats.dump(args.status)
    server.close()


if __name__ == "__main__":
    uvloop.run(main())
