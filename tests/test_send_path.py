"""The per-frame copy path, both ways: DATA frames written by nghttp2's
send_data callback straight from the stream buffer into the output buffer,
handed to the transport as a view (no bytes copy), and inbound messages taken
straight from the DATA chunk. Against an independent HTTP/2 server (the `h2`
library) on loopback: bytes in == bytes out, in order, through flow-control
stalls, partial socket writes and a resume after a reset."""
import asyncio
import random
import socket

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import uvloop

from smartstream._h2 import H2Connection
from smartstream._uplink import Uplink, gap_message
from smartstream.v1 import smartstream_pb2 as pb

from .test_h2_connection import (DATA, END_HEADERS, HEADERS, PATH, RESPONSE_200, Recorder,
                                 fed_connection, frame, grpc_message, until)

BIG = (1 << 31) - 1


def audio(track, seq, ts, pcm, synth=False):
    """What the wire must carry for a frame: protobuf's own encoding."""
    return pb.GatewayMessage(audio=pb.AudioFrame(track=track, sequence=seq, capture_ns=ts,
                                                 pcm=pcm, synthesized=synth)).SerializeToString()


def messages(data):
    """The gRPC messages in a stream's DATA bytes, raw."""
    out, i = [], 0
    while i < len(data):
        assert data[i] == 0
        n = int.from_bytes(data[i + 1:i + 5], "big")
        out.append(bytes(data[i + 5:i + 5 + n]))
        i += 5 + n
    assert i == len(data), "a message cut short"
    return out


class Server(asyncio.Protocol):
    """An h2-library HTTP/2 server that keeps every stream's DATA bytes. With
    window set, streams start with that flow-control window and get no more
    until open_window(); otherwise windows are wide open."""

    def __init__(self, window=None):
        self.window = window
        self.data, self.reset, self.settled = {}, set(), False

    def connection_made(self, transport):
        self.transport = transport
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.window or BIG})
        if self.window is None:
            self.h2.increment_flow_control_window(BIG - 65535)
        transport.write(self.h2.data_to_send())

    def data_received(self, data):
        for ev in self.h2.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.data[ev.stream_id] = bytearray()
                self.h2.send_headers(ev.stream_id, [(":status", "200"),
                                                    ("content-type", "application/grpc")])
            elif isinstance(ev, h2.events.DataReceived):
                self.data[ev.stream_id] += ev.data
                if self.window is None and ev.flow_controlled_length:
                    self.h2.increment_flow_control_window(ev.flow_controlled_length)
                    if self.h2.streams[ev.stream_id].open:
                        self.h2.increment_flow_control_window(ev.flow_controlled_length,
                                                              ev.stream_id)
            elif isinstance(ev, h2.events.SettingsAcknowledged):
                self.settled = True
        self.transport.write(self.h2.data_to_send())

    def open_window(self):
        self.window = None
        self.h2.increment_flow_control_window(BIG - 65535)
        for sid in self.data:
            self.h2.increment_flow_control_window(BIG >> 1, sid)
        self.transport.write(self.h2.data_to_send())

    def reset_stream(self, sid):
        self.h2.reset_stream(sid)
        self.transport.write(self.h2.data_to_send())


async def start(window=None, rcvbuf=None):
    servers = []

    def make():
        s = Server(window)
        servers.append(s)
        return s

    server = await asyncio.get_running_loop().create_server(make, "127.0.0.1", 0)
    if rcvbuf:   # inherited by the accepted socket: the peer reads in small bites
        server.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    port = server.sockets[0].getsockname()[1]
    rec = Recorder()
    conn = H2Connection(f"127.0.0.1:{port}", "http", rec)
    tr, _ = await asyncio.get_running_loop().create_connection(lambda: conn, "127.0.0.1", port)
    await until(lambda: servers and servers[0].settled)
    return server, servers[0], conn, rec, tr


def pcm(stream, seq):
    return random.Random(stream * 100_003 + seq).randbytes(640)


async def test_flow_control_stall_holds_then_delivers_whole_in_order():
    server, peer, conn, rec, _ = await start(window=3000)
    try:
        sids = [conn.open_stream(PATH, []) for _ in range(3)]
        sent = {sid: [] for sid in sids}
        for seq in range(40):   # 40 ticks of one frame per stream
            for i, sid in enumerate(sids):
                assert conn.send_audio_py(sid, 1, seq, seq * 20_000_000, pcm(i, seq), seq % 7 == 3)
                sent[sid].append(audio(1, seq, seq * 20_000_000, pcm(i, seq), seq % 7 == 3))
            conn.flush()
        await until(lambda: sum(map(len, peer.data.values())) >= 3 * 3000)
        # The stall: every stream's window is spent, the rest is held on our side.
        assert all(len(peer.data[sid]) <= 3000 for sid in sids)
        assert all(conn.stream_buffered(sid) > 20_000 for sid in sids)
        peer.open_window()
        await until(lambda: all(conn.stream_buffered(sid) == 0 for sid in sids))
        await delivered_whole(peer, rec, sids, sent)
    finally:
        conn.close()
        server.close()


async def delivered_whole(peer, rec, sids, sent):
    """Every stream got exactly what was sent on it, in order, and none broke."""
    await until(lambda: all(len(peer.data.get(sid, b"")) == sum(5 + len(m) for m in sent[sid])
                            for sid in sids))
    for sid in sids:
        assert messages(peer.data[sid]) == sent[sid]
    assert not rec.closed and not rec.lost


@pytest.mark.parametrize("run", [uvloop.run, asyncio.run], ids=["uvloop", "asyncio"])
def test_partial_socket_writes_keep_bytes_and_order(run):
    run(partial_writes())


async def partial_writes():
    # Small socket buffers and a peer that stops reading: writes are taken
    # in part and the transport keeps the rest (our output buffer, by
    # reference) while later ticks go on queueing.
    server, peer, conn, rec, tr = await start(rcvbuf=4096)
    try:
        tr.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sids = [conn.open_stream(PATH, []) for _ in range(20)]
        sent = {sid: [] for sid in sids}
        peer.transport.pause_reading()
        held = 0
        for seq in range(100):
            for i, sid in enumerate(sids):
                assert conn.send_audio_py(sid, 2, seq, seq, pcm(i, seq))
                sent[sid].append(audio(2, seq, seq, pcm(i, seq)))
            conn.flush()
            held = max(held, tr.get_write_buffer_size())
            await asyncio.sleep(0)
        assert held > 0, "no write was left partly unsent"
        peer.transport.resume_reading()
        await delivered_whole(peer, rec, sids, sent)
    finally:
        conn.close()
        server.close()


@pytest.mark.parametrize("rate", [16000, 8000], ids=["same-rate", "converted"])
async def test_resume_after_reset_sends_the_same_bytes(rate):
    """A server that never acks gets the whole window again on the next
    stream: the same bytes for every frame, the ring's gap announced before
    the frame after it, synthesized frames still marked."""
    server, peer, conn, rec, _ = await start()
    up = Uplink(rate, 16000, [0], 2000)
    first = conn.open_stream(PATH, [])
    wire = {}   # seq -> the frame's message on the first stream

    def take(seq, sid):
        out, gap = up.push(0, seq, seq * 1000, pcm(0, seq)[:rate // 25], True, seq % 5 == 4)
        if gap:
            assert conn.send_message(sid, gap_message(0, seq - gap, gap, pb.Gap.REASON_RING_OVERRUN)
                                     .SerializeToString())
        assert conn.send_audio_py(sid, 1, seq, seq * 1000, out, seq % 5 == 4)
        wire[seq] = audio(1, seq, seq * 1000, out, seq % 5 == 4)

    try:
        for seq in [s for s in range(30) if s != 12]:   # the module's ring lost 12
            take(seq, first)
            conn.flush()
        gap = gap_message(0, 12, 1, pb.Gap.REASON_RING_OVERRUN).SerializeToString()
        expect_first = [wire[s] for s in range(12)] + [gap] + [wire[s] for s in range(13, 30)]
        await until(lambda: len(peer.data.get(first, b"")) == sum(5 + len(m) for m in expect_first))
        assert messages(peer.data[first]) == expect_first
        peer.reset_stream(first)
        await until(lambda: first in rec.closed)
        for seq in range(30, 35):   # while down: only the window has them
            out, _ = up.push(0, seq, seq * 1000, pcm(0, seq)[:rate // 25], False, False)
            wire[seq] = audio(1, seq, seq * 1000, out)
        second = conn.open_stream(PATH, [])
        items, starts = up.resume()
        assert starts == [0, 0]   # track 0 from its first frame; track 1 never sent
        for kind, track, a, b, c in items:
            if kind == "gap":
                assert conn.send_message(second, gap_message(track, a, b, c).SerializeToString())
            else:
                assert conn.send_audio_py(second, track + 1, a, b, c, kind == "silence")
        for seq in range(35, 40):
            take(seq, second)
        conn.flush()
        resumed = [wire[s] for s in range(12)] + [gap] + [wire[s] for s in range(13, 40)]
        await until(lambda: len(peer.data.get(second, b"")) == sum(5 + len(m) for m in resumed))
        got = messages(peer.data[second])
        assert got == resumed
        assert got[:len(expect_first)] == expect_first   # bit-exact repeats of stream one
    finally:
        conn.close()
        server.close()


@pytest.mark.parametrize("seed", range(4))
def test_inbound_messages_whole_and_in_order(seed):
    """Server messages of any size, several to a DATA frame or split across
    frames, arriving in reads cut anywhere: each delivered once, exact."""
    r = random.Random(seed)
    conn, rec, tr, (sid,) = fed_connection()
    bodies = []
    while sum(len(b.audio.pcm) for b in bodies) < 150_000:   # under the read budget of a tick
        bodies.append(pb.ServerMessage(audio=pb.Audio(
            pcm=r.randbytes(r.choice([2, 640, 3000, 40_000])), sample_rate=16000)))
    wire = b"".join(grpc_message(b.SerializeToString()) for b in bodies)
    stream = frame(HEADERS, END_HEADERS, sid, RESPONSE_200)
    i = 0
    while i < len(wire):
        n = r.choice([5, 700, 4000, 16384])
        stream += frame(DATA, 0, sid, wire[i:i + n])
        i += n
    i = 0
    while i < len(stream):
        n = r.choice([1, 9, 1000, 20000, 100_000])
        conn.data_received(stream[i:i + n])
        i += n
    assert rec.messages[sid] == bodies
    assert not rec.closed and not rec.lost
