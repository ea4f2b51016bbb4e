"""Faults on the AI server's side, against the daemon as a subprocess: GOAWAY,
RST_STREAM, a stream whose flow-control window runs out, gRPC error statuses
and malformed HTTP/2. In every case the daemon keeps the other calls streaming
(all their frames arrive, sequence numbers consecutive, one stream each),
recovers the affected call as the resume rules say (call.py: retryable codes
resume with StreamStart.resumed and no frame inside the resume bound lost;
other codes end that call's stream with a clear error), and keeps running.

The servers: tests/aiserver.py (grpc.aio, with options or scripted aborts),
tests/node_server/fault_server.js (Node's own HTTP/2, gRPC framing by hand,
for RST_STREAM and a stalled stream) and a raw asyncio server for bad HTTP/2.
"""
from __future__ import annotations

import asyncio
import base64

import grpc
import numpy as np
import pytest

from smartstream.v1 import smartstream_pb2 as pb

from .aiserver import AIServer
from .harness import Sim
from .test_interop import NodeProc, noise, until, write_wav

RATE = 16000
pytestmark = pytest.mark.usefixtures("mediasim")
transports = pytest.mark.parametrize("transport", ["fast", "grpcio"])


@pytest.fixture
def bystander(server):
    """A healthy AI server: calls to it must not notice the faults elsewhere."""
    return server


@pytest.fixture
def source(tmp_path) -> np.ndarray:
    src = noise(RATE, 0.61)
    write_wav(tmp_path / "in.wav", src, RATE)
    return src


async def run_calls(pool, tmp_path, target: str, prefix: str, calls: int, seconds: float = 2):
    return await Sim(pool, "--calls", str(calls), "--seconds", str(seconds), "--rate", str(RATE),
                     "--source", str(tmp_path / "in.wav"), "--target", target,
                     "--uuid-prefix", prefix).start()


def check_pcm(frames: dict[int, bytes], n: int, src: np.ndarray, uuid: str) -> None:
    """frames (sequence -> pcm) hold every frame 0..n-1, with the source's samples."""
    missing = sorted(set(range(n)) - set(frames))
    assert not missing, f"{uuid}: frames lost: {missing[:10]}{'...' if len(missing) > 10 else ''}"
    assert sorted(frames) == list(range(n)), f"{uuid}: frames past the end of the call"
    got = np.frombuffer(b"".join(frames[i] for i in range(n)), dtype="<i2")
    assert np.array_equal(got, np.resize(src, len(got))), f"{uuid}: samples differ"


async def check_untouched(server: AIServer, uuid: str, n: int, src: np.ndarray) -> None:
    """One stream, start..frames 0..n-1 in order..end, as if nothing happened."""
    await until(lambda: uuid in server.streams, what=f"{uuid}'s stream")
    recs = server.streams[uuid]
    assert len(recs) == 1, f"{uuid} was reconnected ({len(recs)} streams)"
    await asyncio.wait_for(recs[0].done.wait(), 15)
    kinds = recs[0].kinds()
    assert kinds[0] == "start" and kinds[-1] == "end", kinds[-3:]
    assert not recs[0].start.resumed
    frames = recs[0].frames()
    assert [f.sequence for f in frames] == list(range(n)), f"{uuid}: sequence not consecutive"
    check_pcm({f.sequence: f.pcm for f in frames}, n, src, uuid)


def node_streams(node: NodeProc, uuid: str) -> dict[int, list[pb.GatewayMessage]]:
    out: dict[int, list[pb.GatewayMessage]] = {}
    for ev in list(node.events):
        if ev["event"] == "message" and ev.get("uuid") == uuid:
            out.setdefault(ev["stream"], []).append(
                pb.GatewayMessage.FromString(base64.b64decode(ev["data"])))
    return out


def inbound(msgs: list[pb.GatewayMessage]) -> list[pb.AudioFrame]:
    return [m.audio for m in msgs if m.HasField("audio") and m.audio.track == pb.TRACK_INBOUND]


# ---- RST_STREAM ---------------------------------------------------------------------

@transports
async def test_rst_stream_resumes_that_call_only(transport, daemon, pool, tmp_path, source,
                                                 bystander):
    # CANCEL (8) maps to gRPC CANCELLED: retryable, so the call resumes.
    node = NodeProc("fault_server.js", "--port", "0", "--rst", "rst-0000:30:8")
    try:
        d = daemon("--transport", transport)
        target = f"127.0.0.1:{node.port}"
        sim = await run_calls(pool, tmp_path, target, "rst", 3)
        other = await run_calls(pool, tmp_path, f"127.0.0.1:{bystander.port}", "by", 1)
        summary = await sim.wait()
        n = summary["frames_written"] // 3
        await other.wait()
        await until(lambda: all(node.ended(f"rst-{i:04d}", s) for i, s in
                                ((0, 1), (1, 0), (2, 0))), what="every stream's half-close")
        assert any(ev["event"] == "rst" for ev in node.events)
        # The reset call: a second, resumed stream, and every frame arrived.
        streams = node_streams(node, "rst-0000")
        assert sorted(streams) == [0, 1]
        first, second = streams[0], streams[1]
        assert not first[0].start.resumed
        assert second[0].HasField("start") and second[0].start.resumed
        assert second[-1].HasField("end") and second[-1].end.reason == pb.StreamEnd.REASON_HANGUP
        assert second[0].start.next_sequence <= min(f.sequence for f in inbound(second))
        by_seq = {f.sequence: f.pcm for f in inbound(first) + inbound(second)}
        check_pcm(by_seq, n, source, "rst-0000")
        # The calls sharing its connection: one stream each, nothing lost.
        for uuid in ("rst-0001", "rst-0002"):
            streams = node_streams(node, uuid)
            assert list(streams) == [0], f"{uuid} was reconnected"
            msgs = streams[0]
            assert msgs[0].HasField("start") and msgs[-1].HasField("end")
            frames = inbound(msgs)
            assert [f.sequence for f in frames] == list(range(n))
            check_pcm({f.sequence: f.pcm for f in frames}, n, source, uuid)
        await check_untouched(bystander, "by-0000", n, source)
        assert not sim.messages("error") and not sim.messages("hangup")
        assert d.proc.poll() is None
    finally:
        node.stop()


# ---- a stream that stops being read ---------------------------------------------

@transports
async def test_stalled_stream_catches_up_and_others_keep_flowing(transport, daemon, pool,
                                                                 tmp_path, source):
    # A 2 KiB stream window: the stalled stream's window is gone after ~3 frames.
    node = NodeProc("fault_server.js", "--port", "0", "--initial-window", "2048",
                    "--stall", "st-0000:10:1200")
    try:
        d = daemon("--transport", transport)
        sim = await run_calls(pool, tmp_path, f"127.0.0.1:{node.port}", "st", 3)
        summary = await sim.wait()
        n = summary["frames_written"] // 3
        await until(lambda: all(node.ended(f"st-{i:04d}") for i in range(3)),
                    what="every stream's half-close")
        [resume] = [ev for ev in node.events if ev["event"] == "resume"]
        assert resume["window"] == 0, "the stalled stream's window never ran out"
        for uuid in ("st-0000", "st-0001", "st-0002"):
            streams = node_streams(node, uuid)
            assert list(streams) == [0], f"{uuid} was reconnected"
            msgs = streams[0]
            assert msgs[0].HasField("start") and msgs[-1].HasField("end")
            frames = inbound(msgs)
            assert [f.sequence for f in frames] == list(range(n)), uuid
            check_pcm({f.sequence: f.pcm for f in frames}, n, source, uuid)
        assert not sim.messages("error")
        assert d.proc.poll() is None
    finally:
        node.stop()


# ---- GOAWAY -----------------------------------------------------------------------

@transports
async def test_goaway_from_connection_age_resumes_every_call_on_it(transport, daemon, pool,
                                                                   tmp_path, source, bystander):
    # grpc core: GOAWAY at ~0.8 s (+-10 %), the connection closed 0.4 s later; the
    # resumed streams' connection would be aged out only after the 2 s calls end.
    server = AIServer()
    await server.start(options=[("grpc.max_connection_age_ms", 800),
                                ("grpc.max_connection_age_grace_ms", 400)])
    try:
        d = daemon("--transport", transport)
        sim = await run_calls(pool, tmp_path, f"127.0.0.1:{server.port}", "ga", 2)
        other = await run_calls(pool, tmp_path, f"127.0.0.1:{bystander.port}", "by", 1)
        summary = await sim.wait()
        n = summary["frames_written"] // 2
        await other.wait()
        for uuid in ("ga-0000", "ga-0001"):
            await until(lambda: len(server.streams.get(uuid, [])) >= 2
                        and server.streams[uuid][-1].done.is_set(), what=f"{uuid} resumed")
            recs = server.streams[uuid]
            assert not recs[0].start.resumed and all(r.start.resumed for r in recs[1:])
            assert recs[-1].messages[-1].HasField("end")
            check_pcm({f.sequence: f.pcm for f in server.all_frames(uuid)}, n, source, uuid)
        await check_untouched(bystander, "by-0000", n, source)
        assert not sim.messages("error") and not sim.messages("hangup")
        assert d.proc.poll() is None
    finally:
        await server.stop(0)


@transports
async def test_graceful_goaway_moves_open_streams_and_new_ones(
        transport, daemon, pool, tmp_path, source):
    # GOAWAY NO_ERROR, last-stream-id = every open stream: the server is
    # draining. The fast transport moves the open streams at once to a new
    # connection, resumed (grpcio lets them finish on the old one); a call
    # that starts afterwards gets a new connection. No frame is lost either way.
    node = NodeProc("fault_server.js", "--port", "0", "--goaway", "gg-0000:10:all")
    try:
        d = daemon("--transport", transport)
        target = f"127.0.0.1:{node.port}"
        sim = await run_calls(pool, tmp_path, target, "gg", 2)
        await until(lambda: any(ev["event"] == "goaway" for ev in node.events), what="GOAWAY")
        late = await run_calls(pool, tmp_path, target, "gl", 1, seconds=1)
        summary, late_summary = await sim.wait(), await late.wait()
        def last_stream_ended(uuid):
            streams = node_streams(node, uuid)
            return bool(streams) and node.ended(uuid, max(streams))
        await until(lambda: all(map(last_stream_ended, ("gg-0000", "gg-0001", "gl-0000"))),
                    what="every call's last stream's half-close")
        for uuid, n in (("gg-0000", summary["frames_written"] // 2),
                        ("gg-0001", summary["frames_written"] // 2),
                        ("gl-0000", late_summary["frames_written"])):
            streams = node_streams(node, uuid)
            assert len(streams) == (2 if transport == "fast" and uuid != "gl-0000" else 1), uuid
            starts = [msgs[0].start for msgs in streams.values()]
            assert [s.resumed for s in starts] == [False] + [True] * (len(starts) - 1)
            assert list(streams.values())[-1][-1].HasField("end")
            frames = {f.sequence: f.pcm for msgs in streams.values() for f in inbound(msgs)}
            check_pcm(frames, n, source, uuid)
        conns = {ev["uuid"]: ev["conn"] for ev in node.events if ev["event"] == "message"}
        assert conns["gl-0000"] != 0, "a new stream went to a connection that sent GOAWAY"
        assert not sim.messages("error") and not late.messages("error")
        assert d.proc.poll() is None
    finally:
        node.stop()


@transports
async def test_goaway_that_refuses_open_streams_resumes_them(transport, daemon, pool, tmp_path,
                                                             source):
    # GOAWAY NO_ERROR with last-stream-id 1: the server handled the connection's
    # first stream only. The two on streams 3 and 5 were refused, and continue
    # on a new connection with nothing lost; the first one moves too with the
    # fast transport (a GOAWAY is a drain), stays where it is with grpcio.
    node = NodeProc("fault_server.js", "--port", "0", "--goaway", "gn-0000:20:first")
    try:
        d = daemon("--transport", transport)
        sim = await run_calls(pool, tmp_path, f"127.0.0.1:{node.port}", "gn", 3)
        summary = await sim.wait()
        n = summary["frames_written"] // 3
        uuids = [f"gn-{i:04d}" for i in range(3)]

        def last_stream_ended(uuid):
            streams = node_streams(node, uuid)
            return bool(streams) and node.ended(uuid, max(streams))
        await until(lambda: all(map(last_stream_ended, uuids)), what="every call's last stream")
        moved = []
        for uuid in uuids:
            streams = node_streams(node, uuid)
            if len(streams) > 1:
                moved.append(uuid)
                assert all(msgs[0].start.resumed for i, msgs in streams.items() if i > 0)
            last = streams[max(streams)]
            assert last[0].HasField("start") and last[-1].HasField("end")
            by_seq = {f.sequence: f.pcm for msgs in streams.values() for f in inbound(msgs)}
            check_pcm(by_seq, n, source, uuid)
        assert len(moved) == (3 if transport == "fast" else 2), f"moved: {moved}"
        assert not sim.messages("error") and not sim.messages("hangup")
        assert d.proc.poll() is None
    finally:
        node.stop()


# ---- gRPC statuses ------------------------------------------------------------------

@transports
async def test_retryable_status_resumes_and_final_status_ends_the_stream(
        transport, daemon, pool, tmp_path, source):
    server = AIServer()
    aborts = {"ab-0000": grpc.StatusCode.UNAVAILABLE, "ab-0001": grpc.StatusCode.PERMISSION_DENIED}

    def on_start(rec):
        if rec.uuid in aborts and len(server.streams[rec.uuid]) == 1:
            asyncio.get_running_loop().call_later(0.5, rec.outbox.put_nowait, aborts[rec.uuid])
    server.on_start = on_start
    await server.start()
    try:
        d = daemon("--transport", transport)
        sim = await run_calls(pool, tmp_path, f"127.0.0.1:{server.port}", "ab", 3)
        summary = await sim.wait()
        n = summary["frames_written"] // 3
        # UNAVAILABLE: retried, resumed, nothing lost.
        await until(lambda: len(server.streams.get("ab-0000", [])) == 2
                    and server.streams["ab-0000"][1].done.is_set(), what="ab-0000 resumed")
        recs = server.streams["ab-0000"]
        assert recs[1].start.resumed and recs[1].messages[-1].HasField("end")
        check_pcm({f.sequence: f.pcm for f in server.all_frames("ab-0000")}, n, source, "ab-0000")
        # PERMISSION_DENIED: not retried; the module is told why; the call itself goes on.
        assert len(server.streams["ab-0001"]) == 1
        errors = sim.messages("error", "ab-0001")
        assert errors and "PERMISSION_DENIED" in errors[0]["data"], sim.lines
        assert not sim.messages("hangup")
        assert "PERMISSION_DENIED" in d.log()
        await check_untouched(server, "ab-0002", n, source)
        assert not sim.messages("error", "ab-0000") and not sim.messages("error", "ab-0002")
        assert d.proc.poll() is None
    finally:
        await server.stop(0)


@transports
async def test_broken_grpc_messages_end_only_their_stream(transport, daemon, pool, tmp_path,
                                                         source):
    """Three calls get a broken gRPC message each (compressed flag without an
    encoding, bytes that are no ServerMessage, a 64 MiB length prefix); each
    of them loses that stream only and resumes; the fourth call, on the same
    connection, does not notice."""
    kinds = ("compressed", "undecodable", "huge")
    args = [a for i, k in enumerate(kinds) for a in ("--bad", f"bg-{i:04d}:15:{k}")]
    node = NodeProc("fault_server.js", "--port", "0", *args)
    try:
        d = daemon("--transport", transport)
        sim = await run_calls(pool, tmp_path, f"127.0.0.1:{node.port}", "bg", 4)
        summary = await sim.wait()
        n = summary["frames_written"] // 4
        uuids = [f"bg-{i:04d}" for i in range(4)]

        def last_stream_ended(uuid):
            streams = node_streams(node, uuid)
            return bool(streams) and node.ended(uuid, max(streams))
        await until(lambda: all(map(last_stream_ended, uuids)), what="every call's last stream")
        for uuid in uuids[:3]:
            streams = node_streams(node, uuid)
            assert len(streams) >= 2, f"{uuid}: the broken message did not end its stream"
            assert all(msgs[0].start.resumed for i, msgs in streams.items() if i > 0)
            assert streams[max(streams)][-1].HasField("end")
            by_seq = {f.sequence: f.pcm for msgs in streams.values() for f in inbound(msgs)}
            check_pcm(by_seq, n, source, uuid)
        streams = node_streams(node, "bg-0003")
        assert list(streams) == [0], "a call on the same connection was disturbed"
        frames = inbound(streams[0])
        assert [f.sequence for f in frames] == list(range(n))
        assert not sim.messages("error") and not sim.messages("hangup")
        assert d.proc.poll() is None
    finally:
        node.stop()


# ---- malformed HTTP/2 -----------------------------------------------------------------

async def test_malformed_http2_closes_only_that_connection(daemon, pool, tmp_path, source,
                                                          bystander):
    """A 'server' that answers the connection preface with a SETTINGS frame of
    5 bytes (a FRAME_SIZE_ERROR): the fast transport drops that connection and
    says so in the log; the call retries; other calls do not notice."""
    conns = []

    async def bad(reader, writer):
        conns.append(writer)
        try:
            await reader.readexactly(24)           # the client preface
            writer.write(b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5)
            await writer.drain()
            await reader.read(65536)
            await reader.read(65536)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(bad, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        d = daemon("--transport", "fast")
        sim = await run_calls(pool, tmp_path, f"127.0.0.1:{port}", "mf", 1)
        other = await run_calls(pool, tmp_path, f"127.0.0.1:{bystander.port}", "by", 2)
        summary = await other.wait()
        await sim.wait()
        n = summary["frames_written"] // 2
        for uuid in ("by-0000", "by-0001"):
            await check_untouched(bystander, uuid, n, source)
        assert conns, "the daemon never connected to the bad server"
        log = d.log()
        lost = [line for line in log.splitlines()
                if f"connection to 127.0.0.1:{port} closed" in line]
        assert lost and "bad HTTP/2" in lost[0], log[-3000:]
        assert "retrying" in log
        assert d.proc.poll() is None
    finally:
        srv.close()
