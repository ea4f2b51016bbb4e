"""Receiver CPU per TTS message: what the fast transport does between a
socket read and the playout queue, for Audio messages of 20, 100 and 500 ms
at 16 kHz (each in one DATA frame) and of 2 s (64 KB: split across 16 KiB
DATA frames and reads), the stream cut into 64 KiB reads. Two ways, one run:

  in_place   the gateway's path: the read lands in the connection's buffer
             (get_buffer/buffer_updated, as uvloop does), the handler gets a
             view of each message, _tts_wire reads it, pcm is appended once
  protobuf   the way before it, the baseline: the read copied into a bytes
             (uvloop's data_received), each message decoded by protobuf,
             its ByteSize taken (the budget) and its pcm read and appended

    python3 -m pytest benchmarks/bench_tts_receive.py --benchmark-columns=mean,stddev,rounds

No socket: the bytes a server would send are written into the read buffer,
so the loop and the kernel are not counted. extra_info["us_per_message"] is
the mean per message.
"""
import asyncio
import time
import types

import pytest
import uvloop

from smartstream._h2 import H2Connection
from smartstream.transport.fast import _Conn
from smartstream.v1 import smartstream_pb2 as pb

PATH = "/smartstream.v1.AIStream/Stream"
RATE, REPEATS, ROUNDS = 16000, 50, 30   # REPEATS of 256 KiB of messages a round
DATA, HEADERS, SETTINGS, END_HEADERS, ACK = 0, 1, 4, 0x4, 0x1


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def hpack_literal(name, value):
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value


RESPONSE_200 = b"\x88" + hpack_literal(b"content-type", b"application/grpc")


class FakePlayout:
    """A stand-in for the call (Call, Playback, Playout need a pool and a
    stream): only the playout queue's append, Playout.add_audio's copy."""

    def __init__(self):
        self.queue = bytearray()

    def on_audio(self, pcm, rate, size):
        self.queue += pcm

    def on_message(self, msg):
        msg.ByteSize()
        self.queue += msg.audio.pcm


class DecodeAll(_Conn):
    """_Conn as it was: every message decoded by protobuf."""

    def on_message(self, sid, data):
        self.streams[sid].handler.on_message(pb.ServerMessage.FromString(data))


class FakeTransport:
    """A stand-in for the socket's transport: writes go nowhere."""

    def write(self, data):
        pass

    def pause_reading(self):   # the connection's read budget may ask
        pass

    def get_extra_info(self, name, default=None):
        return default


def connection(conn_cls):
    """An H2Connection past its preface with one open stream, its _Conn
    (made without connecting: no socket here) and the stand-in call."""
    handler = conn_cls.__new__(conn_cls)
    conn = H2Connection("test:1", "http", handler)
    sid = conn.open_stream(PATH, [])
    playout = FakePlayout()
    handler.h2, handler.target = conn, "test"
    handler.streams = {sid: types.SimpleNamespace(handler=playout)}
    conn.connection_made(FakeTransport())
    conn.data_received(frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0)
                       + frame(HEADERS, END_HEADERS, sid, RESPONSE_200))
    return conn, playout, sid


def reads(sid, ms):
    """What the server sends, cut into 64 KiB reads; messages in them; pcm bytes a message."""
    n = ms * RATE * 2 // 1000
    msg = pb.ServerMessage(audio=pb.Audio(pcm=bytes(range(256)) * (n // 256) + bytes(n % 256),
                                          sample_rate=RATE))
    body = msg.SerializeToString()
    wire = b"\0" + len(body).to_bytes(4, "big") + body
    count = max(1, (256 << 10) // len(wire))
    framed = b"".join(frame(DATA, 0, sid, wire[i:i + (16 << 10)])
                      for i in range(0, len(wire), 16 << 10)) * count
    return [framed[i:i + (64 << 10)] for i in range(0, len(framed), 64 << 10)], count, n


@pytest.mark.benchmark(group="tts", timer=time.process_time)
@pytest.mark.parametrize("ms", [20, 100, 500, 2000])
@pytest.mark.parametrize("way", ["in_place", "protobuf"])
def test_receive(benchmark, way, ms):
    conn, playout, sid = connection(_Conn if way == "in_place" else DecodeAll)
    chunks, count, pcm_len = reads(sid, ms)
    buf = conn.get_buffer(64 << 10)

    async def reads_():
        for _ in range(REPEATS):
            for data in chunks:
                buf[:len(data)] = data   # where the kernel's read puts it
                if way == "in_place":
                    conn.buffer_updated(len(data))
                else:
                    conn.data_received(bytes(buf[:len(data)]))   # uvloop's copy
            assert len(playout.queue) == count * pcm_len
            del playout.queue[:]
    loop = uvloop.new_event_loop()
    benchmark.pedantic(lambda: loop.run_until_complete(reads_()), rounds=ROUNDS, warmup_rounds=2)
    loop.close()
    assert conn.is_open
    if benchmark.stats is not None:   # None under --benchmark-disable
        benchmark.extra_info["us_per_message"] = benchmark.stats.stats.mean / (REPEATS * count) * 1e6
