"""smartstream._h2.H2Connection: the nghttp2 gRPC client connection, against
real grpc.aio servers on loopback, hand-written HTTP/2 peers for what a real
server will not do (stop reading, send garbage), and frames fed straight into
data_received for the stream-level cases."""
import asyncio
import os
import random
import ssl
import subprocess

import grpc
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings, strategies as st

from smartstream._h2 import MESSAGE_SIZE_MAX, SEND_BUFFER_MAX, H2Connection, H2Error
from smartstream.v1 import smartstream_pb2 as pb
from smartstream.v1 import smartstream_pb2_grpc as pb_grpc

PATH = "/smartstream.v1.AIStream/Stream"
OK, CANCELLED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = (
    c.value[0] for c in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED,
                         grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
                         grpc.StatusCode.UNAVAILABLE))


class Recorder:
    """The connection's handler: everything it was told, checked for order."""

    def __init__(self):
        self.messages = {}   # stream id -> [ServerMessage]
        self.closed = {}     # stream id -> (status, message)
        self.lost = []

    def on_message(self, sid, data):
        assert sid not in self.closed, f"message for stream {sid} after its close"
        self.messages.setdefault(sid, []).append(pb.ServerMessage.FromString(data))

    def on_stream_closed(self, sid, status, message):
        assert sid not in self.closed, f"stream {sid} closed twice"
        assert not self.lost, "stream closed after the connection was lost"
        self.closed[sid] = (status, message)

    def on_connection_lost(self, reason):
        self.lost.append(reason)


async def until(pred, timeout=20.0):
    """Wait for pred() (a deadline against hangs, not a timing assertion)."""
    async def poll():
        while not pred():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


async def connect(port, handler, ctx=None, host="127.0.0.1"):
    conn = H2Connection(f"{host}:{port}", "https" if ctx else "http", handler)
    await asyncio.get_running_loop().create_connection(
        lambda: conn, "127.0.0.1", port, ssl=ctx, server_hostname=host if ctx else None)
    return conn


# ---- a real grpc.aio server ----

class Echo(pb_grpc.AIStreamServicer):
    """Answers every AudioFrame with its PCM as Audio; x-abort: <detail> aborts
    with INVALID_ARGUMENT after the first message."""

    def __init__(self):
        self.messages = {}   # x-call -> [GatewayMessage]

    async def Stream(self, request_iterator, context):
        md = dict(context.invocation_metadata())
        got = self.messages.setdefault(md.get("x-call"), [])
        async for m in request_iterator:
            got.append(m)
            if "x-abort" in md:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, md["x-abort"])
            if m.HasField("audio"):
                yield pb.ServerMessage(audio=pb.Audio(pcm=m.audio.pcm, sample_rate=16000))


async def start_echo(options=None, creds=None):
    servicer = Echo()
    server = grpc.aio.server(options=options)
    pb_grpc.add_AIStreamServicer_to_server(servicer, server)
    addr = "127.0.0.1:0"
    port = server.add_secure_port(addr, creds) if creds else server.add_insecure_port(addr)
    await server.start()
    return servicer, server, port


@pytest.fixture
async def echo_server():
    servers = []

    async def start(**kw):
        servicer, server, port = await start_echo(**kw)
        servers.append(server)
        return servicer, server, port

    yield start
    for s in servers:
        await s.stop(None)


def pcm_of(stream_no, frame_no):
    return bytes([(stream_no * 7 + frame_no + i) & 0xff for i in range(640)])


async def round_trip(conn, rec, servicer, streams, frames):
    sids = [conn.open_stream(PATH, [("x-call", str(i))]) for i in range(streams)]
    for i, sid in enumerate(sids):
        assert conn.send_message(sid, pb.GatewayMessage(
            start=pb.StreamStart(call_uuid=f"call-{i}", sample_rate=16000)).SerializeToString())
    for f in range(frames):
        for i, sid in enumerate(sids):
            assert conn.send_audio_py(sid, 1, f + 1, 1_000_000 + f, pcm_of(i, f))
        conn.flush()
        await asyncio.sleep(0)
    for sid in sids:
        conn.end_stream(sid)
    conn.flush()
    await until(lambda: all(sid in rec.closed for sid in sids))
    for i, sid in enumerate(sids):
        assert rec.closed[sid] == (OK, "")
        got = rec.messages[sid]
        assert [m.audio.pcm for m in got] == [pcm_of(i, f) for f in range(frames)]
        assert all(m.audio.sample_rate == 16000 for m in got)
        start, *audio = servicer.messages[str(i)]
        assert start.start.call_uuid == f"call-{i}"
        assert [(m.audio.track, m.audio.sequence, m.audio.capture_ns) for m in audio] == [
            (pb.TRACK_INBOUND, f + 1, 1_000_000 + f) for f in range(frames)]
    assert conn.open_streams == 0


async def echo_round_trip(streams, frames, tls=None):
    """A whole scenario on whatever loop runs it: uvloop in production."""
    creds, ctx = tls if tls else (None, None)
    servicer, server, port = await start_echo(creds=creds)
    try:
        rec = Recorder()
        conn = await connect(port, rec, ctx, host="localhost" if tls else "127.0.0.1")
        assert conn.scheme == ("https" if tls else "http")
        await round_trip(conn, rec, servicer, streams, frames)
        conn.ping()
        await until(lambda: conn.unacked_pings == 0)
        assert conn.is_open and not rec.lost
        conn.close()
        assert rec.lost == ["closed by the client"] and not conn.is_open
    finally:
        await server.stop(None)


@pytest.mark.parametrize("run", [uvloop.run, asyncio.run], ids=["uvloop", "asyncio"])
def test_round_trip_50_streams_one_connection(run):
    run(echo_round_trip(streams=50, frames=100))


async def test_error_status_reaches_only_its_stream(echo_server):
    servicer, _, port = await echo_server()
    rec = Recorder()
    conn = await connect(port, rec)
    bad = conn.open_stream(PATH, [("x-abort", "bad")])
    good = [conn.open_stream(PATH, [("x-call", str(i))]) for i in range(3)]
    for sid in [bad, *good]:
        conn.send_audio_py(sid, 1, 1, 1, b"\x01\x02")
    conn.flush()
    await until(lambda: bad in rec.closed)
    assert rec.closed[bad] == (INVALID_ARGUMENT, "bad")
    assert not conn.send_audio_py(bad, 1, 2, 2, b"\x01\x02")
    for sid in good:
        conn.send_audio_py(sid, 1, 2, 2, b"\x03\x04")
        conn.end_stream(sid)
    conn.flush()
    await until(lambda: all(sid in rec.closed for sid in good))
    for sid in good:
        assert rec.closed[sid] == (OK, "")
        assert [m.audio.pcm for m in rec.messages[sid]] == [b"\x01\x02", b"\x03\x04"]


async def test_concurrent_stream_limit(echo_server):
    _, _, port = await echo_server(options=[("grpc.max_concurrent_streams", 4)])
    rec = Recorder()
    conn = await connect(port, rec)
    await until(lambda: conn.available_streams == 4)   # the server's SETTINGS arrived
    sids = [conn.open_stream(PATH, []) for _ in range(4)]
    assert conn.available_streams == 0 and conn.open_streams == 4
    with pytest.raises(H2Error, match="streams the server allows"):
        conn.open_stream(PATH, [])
    conn.reset_stream(sids[0])
    conn.flush()
    assert rec.closed[sids[0]] == (CANCELLED, "cancelled by the client")
    assert conn.available_streams == 1


async def test_server_shutdown_mid_stream(echo_server):
    servicer, server, port = await echo_server()
    rec = Recorder()
    conn = await connect(port, rec)
    sids = [conn.open_stream(PATH, [("x-call", str(i))]) for i in range(5)]
    for sid in sids:
        conn.send_audio_py(sid, 1, 1, 1, b"\x00" * 640)
    conn.flush()
    await until(lambda: all(sid in rec.messages for sid in sids))
    await server.stop(None)
    await until(lambda: rec.lost)
    assert {sid: status for sid, (status, _) in rec.closed.items()} == {
        sid: UNAVAILABLE for sid in sids}
    assert len(rec.lost) == 1 and not conn.is_open and conn.open_streams == 0
    with pytest.raises(H2Error, match="closed"):
        conn.open_stream(PATH, [])


# ---- hand-written HTTP/2 peers ----

def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
SERVER_PREFACE = frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0)


def hpack_literal(name, value):
    """A literal header field without indexing, new name (RFC 7541 6.2.2)."""
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value


RESPONSE_200 = b"\x88" + hpack_literal(b"content-type", b"application/grpc")   # 0x88: :status 200


def trailers(status, message=b""):
    return hpack_literal(b"grpc-status", status) + (
        hpack_literal(b"grpc-message", message) if message else b"")


def grpc_message(data, flag=0):
    return bytes([flag]) + len(data).to_bytes(4, "big") + data


class Peer(asyncio.Protocol):
    """A loopback HTTP/2 'server' that speaks only what a test scripts: it
    writes `greeting` on connect and then `reply` once the client's first
    request HEADERS can have arrived; with read=False it stops reading."""

    def __init__(self, greeting=b"", reply=b"", read=True, hang_up=False):
        self.greeting, self.reply, self.read, self.hang_up = greeting, reply, read, hang_up
        self.got = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.greeting)
        if not self.read:
            transport.pause_reading()

    def data_received(self, data):
        self.got += len(data)
        if self.reply is not None:
            self.transport.write(self.reply)
            self.reply = None
            if self.hang_up:
                self.transport.write_eof()


@pytest.fixture
async def peer():
    servers = []

    async def start(**kw):
        server = await asyncio.get_running_loop().create_server(
            lambda: Peer(**kw), "127.0.0.1", 0)
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    for s in servers:
        s.close()


async def open_then_connect(port, nstreams=2):
    """Streams are opened before the connection: the client's first write
    already carries their HEADERS, so the peer's answer comes after them."""
    rec = Recorder()
    conn = H2Connection(f"127.0.0.1:{port}", "http", rec)
    sids = [conn.open_stream(PATH, []) for _ in range(nstreams)]
    await asyncio.get_running_loop().create_connection(lambda: conn, "127.0.0.1", port)
    return conn, rec, sids


async def test_server_that_stops_reading(peer):
    port = await peer(greeting=SERVER_PREFACE, read=False)
    conn, rec, (sid, other) = await open_then_connect(port)
    pcm = b"\x55" * 640
    last, growth = 0, []
    while conn.send_audio_py(sid, 1, 1, 1, pcm):
        conn.flush()
        growth.append(conn.stream_buffered(sid) > last)
        last = conn.stream_buffered(sid)
    # The 64 KiB connection window went out; the rest stayed queued, up to the cap.
    assert all(growth[len(growth) // 2:]) and SEND_BUFFER_MAX - 700 < last <= SEND_BUFFER_MAX
    conn.flush()
    status, message = rec.closed[sid]
    assert status == RESOURCE_EXHAUSTED and "not reading" in message
    assert conn.stream_buffered(sid) == 0
    assert other not in rec.closed and conn.is_open and not rec.lost
    conn.close()
    assert rec.closed[other][0] == CANCELLED


async def test_server_answers_http1(peer):
    port = await peer(reply=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    conn, rec, sids = await open_then_connect(port)
    await until(lambda: rec.lost)
    assert len(rec.lost) == 1 and "HTTP/2" in rec.lost[0] and not conn.is_open
    assert all(rec.closed[sid][0] == UNAVAILABLE for sid in sids)


async def test_server_sends_random_bytes(peer):
    port = await peer(reply=random.Random(7).randbytes(4096))
    conn, rec, sids = await open_then_connect(port)
    await until(lambda: rec.lost)
    assert len(rec.lost) == 1 and not conn.is_open
    assert all(rec.closed[sid][0] == UNAVAILABLE for sid in sids)


async def test_malformed_frame_after_preface(peer):
    # A SETTINGS frame must be a multiple of 6 bytes long.
    port = await peer(greeting=SERVER_PREFACE, reply=frame(SETTINGS, 0, 0, b"\x00" * 5))
    conn, rec, sids = await open_then_connect(port)
    await until(lambda: rec.lost)
    assert rec.lost == ["bad HTTP/2 from the server, client sent GOAWAY FRAME_SIZE_ERROR"]
    assert all(rec.closed[sid] == (UNAVAILABLE, "connection lost: " + rec.lost[0])
               for sid in sids)


async def test_server_hangs_up(peer):
    port = await peer(greeting=SERVER_PREFACE, reply=b"", hang_up=True)
    conn, rec, sids = await open_then_connect(port)
    await until(lambda: rec.lost)
    assert rec.lost == ["server closed the connection"]
    assert all(rec.closed[sid] == (UNAVAILABLE, "connection lost: server closed the connection")
               for sid in sids)


# ---- frames fed straight to data_received ----

class RecordingTransport:
    """A test stand-in for an asyncio transport: records what is written."""

    def __init__(self):
        self.writes = []
        self.closed = False

    def write(self, data):
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def close(self):
        self.closed = True

    def get_extra_info(self, name, default=None):
        return default


def fed_connection(nstreams=1):
    rec, tr = Recorder(), RecordingTransport()
    conn = H2Connection("test:1", "http", rec)
    sids = [conn.open_stream(PATH, []) for _ in range(nstreams)]
    conn.connection_made(tr)
    conn.data_received(SERVER_PREFACE)
    return conn, rec, tr, sids


def test_close_gives_up_on_the_connection():
    conn, rec, tr, (sid,) = fed_connection()
    conn.close("keepalive: no PING answer", status=UNAVAILABLE)
    assert rec.closed[sid] == (UNAVAILABLE, "connection lost: keepalive: no PING answer")
    assert rec.lost == ["keepalive: no PING answer"] and tr.closed
    assert tr.writes[-1] == frame(GOAWAY, 0, 0, bytes(8))


def test_one_write_per_flush():
    conn, rec, tr, sids = fed_connection(nstreams=20)
    tr.writes.clear()
    conn.flush()
    assert tr.writes == []   # nothing pending: no write
    for sid in sids:
        conn.send_audio_py(sid, 1, 1, 1, b"\x00" * 640)
    assert tr.writes == []
    conn.flush()
    assert len(tr.writes) == 1 and len(tr.writes[0]) > 20 * 640


def test_message_split_across_data_frames():
    conn, rec, tr, (sid,) = fed_connection()
    body = pb.ServerMessage(audio=pb.Audio(pcm=os.urandom(3000), sample_rate=8000))
    wire = grpc_message(body.SerializeToString()) * 2
    cuts = [0, 3, 4, 1000, 3010, len(wire)]
    conn.data_received(frame(HEADERS, END_HEADERS, sid, RESPONSE_200) + b"".join(
        frame(DATA, 0, sid, wire[a:b]) for a, b in zip(cuts, cuts[1:])))
    assert rec.messages[sid] == [body, body]
    conn.data_received(frame(HEADERS, END_HEADERS | END_STREAM, sid, trailers(b"0")))
    assert rec.closed[sid] == (OK, "")


def test_buffered_reads_hand_over_messages_in_place():
    """uvloop reads the socket into get_buffer(): a whole message reaches
    on_message as a view of that buffer, and one split across DATA frames or
    reads as a view of the stream's buffer that gathered it; each view is
    dead once on_message returns (the buffer is read over next)."""
    class Keeper(Recorder):
        kept, under = [], []

        def on_message(self, sid, data):
            super().on_message(sid, data)
            self.kept.append(data)
            self.under.append(data.obj)

    rec, tr = Keeper(), RecordingTransport()
    conn = H2Connection("test:1", "http", rec)
    sid = conn.open_stream(PATH, [])
    conn.connection_made(tr)

    def read(data):
        buf = conn.get_buffer(len(data))
        buf[:len(data)] = data
        conn.buffer_updated(len(data))

    read(SERVER_PREFACE)
    body = pb.ServerMessage(audio=pb.Audio(pcm=os.urandom(3000), sample_rate=8000))
    wire = grpc_message(body.SerializeToString())
    read(frame(HEADERS, END_HEADERS, sid, RESPONSE_200) + frame(DATA, 0, sid, wire)
         + frame(DATA, 0, sid, wire[:1000]) + frame(DATA, 0, sid, wire[1000:] + wire[:2]))
    read(frame(DATA, 0, sid, wire[2:]))   # the third, across two reads
    assert rec.messages[sid] == [body] * 3
    assert all(type(v) is memoryview for v in rec.kept)
    read_buffer = conn.get_buffer(0).obj
    assert rec.under[0] is read_buffer
    assert rec.under[1] is not read_buffer and rec.under[2] is not rec.under[1]
    for view in rec.kept:
        with pytest.raises(ValueError):
            bytes(view)


@pytest.mark.parametrize("name,frames,status,text", [
    ("compressed", [frame(DATA, 0, 1, grpc_message(b"x", flag=1))], INTERNAL, "compressed"),
    ("too big", [frame(DATA, 0, 1, (MESSAGE_SIZE_MAX + 1).to_bytes(5, "big"))],
     RESOURCE_EXHAUSTED, "limit"),
    ("http 404", [], UNIMPLEMENTED, "HTTP status 404"),
    ("trailers", [frame(HEADERS, END_HEADERS | END_STREAM, 1, trailers(b"3", b"bad%20arg"))],
     INVALID_ARGUMENT, "bad arg"),
    ("no grpc-status", [frame(DATA, END_STREAM, 1)], INTERNAL, "without grpc-status"),
    ("inside a message", [frame(DATA, 0, 1, grpc_message(b"abc")[:6]),
                          frame(HEADERS, END_HEADERS | END_STREAM, 1, trailers(b"0"))],
     INTERNAL, "inside a message"),
    ("rst cancel", [frame(RST_STREAM, 0, 1, (8).to_bytes(4, "big"))], CANCELLED, "CANCEL"),
    ("rst refused", [frame(RST_STREAM, 0, 1, (7).to_bytes(4, "big"))], UNAVAILABLE, "REFUSED"),
    ("goaway", [frame(GOAWAY, 0, 0, bytes(8))], UNAVAILABLE, "GOAWAY"),
])
def test_stream_level_endings(name, frames, status, text):
    conn, rec, tr, (sid,) = fed_connection()
    head = b"\x8d" if name == "http 404" else RESPONSE_200   # 0x8d: :status 404
    flags = END_HEADERS | (END_STREAM if name == "http 404" else 0)
    conn.data_received(frame(HEADERS, flags, sid, head) + b"".join(frames))
    conn.flush()   # our RST_STREAM goes out, the close is reported
    assert rec.closed[sid][0] == status and text in rec.closed[sid][1]
    assert sid not in rec.messages
    assert conn.open_streams == 0


def test_handler_error_resets_only_its_stream():
    class Failing(Recorder):
        def on_message(self, sid, data):
            raise RuntimeError("handler bug")
    rec, tr = Failing(), RecordingTransport()
    conn = H2Connection("test:1", "http", rec)
    sid = conn.open_stream(PATH, [])
    conn.connection_made(tr)
    conn.data_received(SERVER_PREFACE + frame(HEADERS, END_HEADERS, sid, RESPONSE_200)
                       + frame(DATA, 0, sid, grpc_message(b"")))
    conn.flush()
    assert rec.closed[sid] == (INTERNAL, "the on_message handler raised (logged)")
    assert conn.is_open


HEADER_BLOCKS = [RESPONSE_200, b"\x8d", trailers(b"0"), trailers(b"13", b"x%41"), trailers(b"x")]


@st.composite
def server_bytes(draw):
    """What a confused server may send: frames with any type, flags and
    stream, with garbage or plausible payloads, maybe cut short."""
    out = SERVER_PREFACE if draw(st.booleans()) else b""
    for _ in range(draw(st.integers(0, 6))):
        ftype = draw(st.sampled_from([DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY,
                                      WINDOW_UPDATE, draw(st.integers(0, 255))]))
        payload = draw(st.one_of(
            st.binary(max_size=64),
            st.sampled_from(HEADER_BLOCKS),
            st.builds(grpc_message, st.binary(max_size=32), st.integers(0, 1))))
        out += frame(ftype, draw(st.integers(0, 255)), draw(st.sampled_from([0, 1, 3, 5])),
                     payload)
    if draw(st.booleans()):
        out += draw(st.binary(max_size=64))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(server_bytes(), st.integers(1, 64))
def test_fuzz_inbound(data, chunk):
    rec, tr = Recorder(), RecordingTransport()
    conn = H2Connection("test:1", "http", rec)
    sids = [conn.open_stream(PATH, []) for _ in range(2)]
    conn.connection_made(tr)
    for i in range(0, len(data), chunk):
        conn.data_received(data[i:i + chunk])
    conn.flush()
    if conn.is_open:
        assert not tr.closed and not rec.lost
    else:
        assert tr.closed and len(rec.lost) == 1 and conn.open_streams == 0
        assert set(rec.closed) == set(sids)
    assert conn.open_streams + len(rec.closed) == len(sids)


# ---- send_audio's bytes are protobuf's ----

@given(track=st.integers(0, 2**31 - 1), seq=st.integers(0, 2**64 - 1),
       capture_ns=st.integers(0, 2**64 - 1), pcm=st.binary(max_size=2000), synth=st.booleans())
def test_send_audio_encoding_is_protobufs(track, seq, capture_ns, pcm, synth):
    conn = H2Connection("test:1", "http", Recorder())
    sid = conn.open_stream(PATH, [])
    assert conn.send_audio_py(sid, track, seq, capture_ns, pcm, synth)
    expected = pb.GatewayMessage(audio=pb.AudioFrame(
        track=track, sequence=seq, capture_ns=capture_ns, pcm=pcm,
        synthesized=synth)).SerializeToString()
    assert conn.stream_buffered(sid) == 5 + len(expected)
    # the queued bytes are the DATA payload nghttp2 sends: take them off the wire
    tr = RecordingTransport()
    conn.connection_made(tr)
    assert b"".join(tr.writes).endswith(frame(DATA, 0, sid, grpc_message(expected)))


# ---- TLS ----

@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


@pytest.mark.parametrize("run", [uvloop.run, asyncio.run], ids=["uvloop", "asyncio"])
def test_tls_round_trip(run, self_signed):
    key, cert = self_signed
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    ctx = ssl.create_default_context(cafile=cert)
    ctx.set_alpn_protocols(["h2"])
    run(echo_round_trip(streams=5, frames=20, tls=(creds, ctx)))


async def test_tls_without_h2_is_refused(self_signed):
    key, cert = self_signed
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.set_alpn_protocols(["http/1.1"])
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0,
                                                            ssl=sctx)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.set_alpn_protocols(["h2"])
    rec = Recorder()
    try:
        conn = await connect(server.sockets[0].getsockname()[1], rec, ctx, host="localhost")
        assert not conn.is_open
        assert rec.lost == ["TLS server did not negotiate HTTP/2 (ALPN None, need 'h2')"]
    finally:
        server.close()
