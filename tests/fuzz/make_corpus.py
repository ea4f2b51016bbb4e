"""Writes the seed inputs (seed-*) of every fuzzer into tests/fuzz/corpus/<name>/.

Run by hand when an input format or the pool layout changes:
    python3 tests/fuzz/make_corpus.py
Seeds are valid examples in each fuzzer's input form (see each fuzzer's
docstring); inputs the fuzzers found themselves are kept next to them.
The h2_inbound seeds are what a real grpc.aio server sent to
smartstream._h2.H2Connection on loopback.
"""
import asyncio
import json
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from smartstream import _ring  # noqa: E402
from smartstream.v1 import smartstream_pb2 as pb  # noqa: E402

CORPUS = os.path.join(HERE, "corpus")


def write(name: str, seeds: dict) -> None:
    d = os.path.join(CORPUS, name)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if old.startswith("seed-"):
            os.unlink(os.path.join(d, old))
    for seed, data in seeds.items():
        with open(os.path.join(d, f"seed-{seed}"), "wb") as f:
            f.write(data)


# -- h2_inbound: [mode][streams] + server bytes -----------------------------------------

async def capture_grpc_server() -> dict:
    """What a real grpc.aio server sends on one connection: two streams, one
    answered and finished OK, one aborted with INVALID_ARGUMENT."""
    import grpc
    from smartstream._h2 import H2Connection
    from tests.test_h2_connection import PATH, Echo
    from smartstream.v1 import smartstream_pb2_grpc as pb_grpc

    server = grpc.aio.server()
    pb_grpc.add_AIStreamServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    got, closed = bytearray(), {}

    class Handler:
        def on_message(self, sid, data):
            pass

        def on_stream_closed(self, sid, status, message):
            closed[sid] = status

        def on_connection_lost(self, reason):
            pass

    conn = H2Connection(f"127.0.0.1:{port}", "http", Handler())

    class Tap(asyncio.Protocol):   # records the server's bytes on their way in
        def connection_made(self, transport):
            conn.connection_made(transport)

        def data_received(self, data):
            got.extend(data)
            conn.data_received(data)

        def connection_lost(self, exc):
            conn.connection_lost(exc)

    ok = conn.open_stream(PATH, [("x-call", "a")])
    bad = conn.open_stream(PATH, [("x-call", "b"), ("x-abort", "bad request")])
    await asyncio.get_running_loop().create_connection(Tap, "127.0.0.1", port)
    for sid in (ok, bad):
        conn.send_message(sid, pb.GatewayMessage(start=pb.StreamStart(
            call_uuid="seed", sample_rate=16000)).SerializeToString())
        conn.send_audio_py(sid, 1, 1, 1, bytes(range(64)))
    conn.end_stream(ok)
    conn.flush()
    for _ in range(500):
        if len(closed) == 2:
            break
        await asyncio.sleep(0.01)
    conn.close()
    await server.stop(None)
    assert len(closed) == 2, closed
    return bytes(got)


def h2_seeds() -> dict:
    from tests.test_h2_connection import (
        DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING, RESPONSE_200, RST_STREAM,
        SERVER_PREFACE, SETTINGS, WINDOW_UPDATE, frame, grpc_message, trailers)
    real = asyncio.run(capture_grpc_server())
    audio = pb.ServerMessage(audio=pb.Audio(pcm=bytes(64), sample_rate=16000)).SerializeToString()
    hand = (SERVER_PREFACE
            + frame(SETTINGS, 0, 0, (3).to_bytes(2, "big") + (100).to_bytes(4, "big"))
            + frame(HEADERS, END_HEADERS, 1, RESPONSE_200)
            + frame(DATA, 0, 1, grpc_message(audio))
            + frame(PING, 0, 0, bytes(8))
            + frame(WINDOW_UPDATE, 0, 1, (1000).to_bytes(4, "big"))
            + frame(HEADERS, END_HEADERS | END_STREAM, 1, trailers(b"0"))
            + frame(HEADERS, END_HEADERS, 3, RESPONSE_200)
            + frame(RST_STREAM, 0, 3, (8).to_bytes(4, "big")))
    goaway = SERVER_PREFACE + frame(GOAWAY, 0, 0, (1).to_bytes(4, "big") + bytes(4) + b"bye")
    # compact form: [type][flags][stream index][kind][n] (kind 2: header block n, 3: message n)
    compact = bytes([HEADERS, END_HEADERS, 0, 2, 0, DATA, 0, 0, 3, 0, DATA, 0, 0, 1, 3]) + b"abc" + \
        bytes([HEADERS, END_HEADERS | END_STREAM, 0, 2, 2, RST_STREAM, 0, 1, 0, 4, 0, 0, 0, 8])
    return {
        "grpc-server-2-streams": bytes([0, 1]) + real,
        "grpc-server-chunks-of-7": bytes([7, 1]) + real,
        "grpc-server-then-hangup": bytes([0x40, 1]) + real,
        "hand-written-frames": bytes([0, 1]) + hand,
        "hand-written-byte-by-byte": bytes([1, 1]) + hand,
        "goaway": bytes([0, 3]) + goaway,
        "compact-frames": bytes([0x80, 1]) + compact,
    }


# -- server_message: messages, each [len:2 BE][bytes] ------------------------------------

def framed(*msgs) -> bytes:
    return b"".join(len(b).to_bytes(2, "big") + b for b in (m.SerializeToString() for m in msgs))


def server_message_seeds() -> dict:
    event = pb.ServerMessage(event=pb.Event(name="intent"))
    event.event.data.update({"intent": "book", "n": 2, "ok": True, "none": None,
                             "slots": {"date": "2024-05-01"}, "list": [1, "a", False]})
    pcm = bytes(range(64))
    return {
        "audio-16k": framed(pb.ServerMessage(audio=pb.Audio(pcm=pcm, sample_rate=16000))),
        "audio-48k": framed(pb.ServerMessage(audio=pb.Audio(pcm=pcm, sample_rate=48000))),
        "audio-mark-clear": framed(
            pb.ServerMessage(audio=pb.Audio(pcm=pcm, sample_rate=8000)),
            pb.ServerMessage(mark=pb.Mark(name="greeting-done")),
            pb.ServerMessage(clear=pb.Clear())),
        "mark": framed(pb.ServerMessage(mark=pb.Mark(name="m1"))),
        "hangup": framed(pb.ServerMessage(hangup=pb.Hangup(cause="USER_BUSY"))),
        "transfer": framed(pb.ServerMessage(transfer=pb.Transfer(
            destination="1000", dialplan="XML", context="default"))),
        "transfer-context-only": framed(pb.ServerMessage(transfer=pb.Transfer(
            destination="1000", context="default"))),
        "event": framed(event),
        "unknown-kind": framed(pb.ServerMessage()),
    }


# -- payload_json: the JSON text ------------------------------------------------------------

def payload_seeds() -> dict:
    texts = {
        "object": {"intent": "book", "slots": {"date": "2024-05-01", "n": 2}, "ok": True,
                   "none": None, "list": [1, 2.5, "s", [], {}], "text": "caf\u00e9 \u2603"},
        "empty-object": {},
        "nested": {"a": {"b": {"c": [[1], [2, [3]]]}}},
        "deep": {"d": json.loads("[" * 20 + '"x", []' + "]" * 20)},
        "array-not-object": [1, 2, 3],
        "string-not-object": "hello",
    }
    seeds = {k: json.dumps(v).encode() for k, v in texts.items()}
    seeds["pretty"] = json.dumps(texts["object"], indent=2, ensure_ascii=False).encode()
    return seeds


# -- pool_file: [mode] + file prefix or patches -------------------------------------------

def pool_seeds() -> dict:
    path = f"/dev/shm/ssfuzz-seed-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    pool = _ring.Pool.open(path, 1)
    try:
        ms = _ring.ModuleStream(pool, "seed-call", "127.0.0.1:50051", 16000, tracks=3,
                                caller="1000", callee="2000", metadata='{"k": 1}')
        ms.write(0, bytes(320), 1)
        pool.close()
        with open(path, "rb") as f:
            valid = f.read()
    finally:
        os.unlink(path)
    patch = lambda anchor, delta, data: (anchor.to_bytes(2, "little")   # noqa: E731
                                          + delta.to_bytes(1, "little", signed=True)
                                          + bytes([len(data)]) + data)
    return {
        # the pool header and the slot's header and ring positions, the rest as valid
        "header-and-slot-prefix": b"\x80" + valid[:12288],
        "header-only-file": b"\xc0" + valid[:4096],
        "short-file": b"\xc0" + valid[:40],
        "valid-1-slot": b"\x00",
        "valid-2-slots": b"\x01",
        "valid-2-slots-daemon-open": b"\x03",
        "patched": b"\x00" + patch(3, 0, b"\xff" * 8) + patch(40, -4, b"\x00\x00\x01\x00")
        + patch(60, 8, (1 << 40).to_bytes(8, "little")),
    }


# -- settings: TOML, then "#--env--" and NAME=value lines -------------------------------------

def settings_seeds() -> dict:
    repo = os.path.dirname(os.path.dirname(HERE))
    with open(os.path.join(repo, "packaging", "smartstream.toml"), "rb") as f:
        packaged = f.read()
    targets = b"""pool_path = "/dev/shm/ss.pool"
pool_slots = 16
log_level = "debug"
pool_group = ""

[targets."asr.example.com:443"]
tls = true
ca_file = "/etc/ssl/certs/ca-certificates.crt"
server_name = "asr.internal"
token = "secret"

[targets."dns:///tts.example.com:50051"]
[targets."ipv4:127.0.0.1:50051,127.0.0.2:50051"]
[targets."[::1]:50051"]
tls = false
"""
    env = b"\n#--env--\nSMARTSTREAM_POOL_SLOTS=0x10\nSMARTSTREAM_CADENCE_MS=10.5\n" \
          b"SMARTSTREAM_LOG_LEVEL=warning\nSMARTSTREAM_ADMIN_LISTEN=[::1]:9464\nPATH=/usr/bin\n"
    return {"packaged": packaged, "targets": targets, "targets-and-env": targets + env,
            "empty-file-env-only": env}


# -- cli_args: program and arguments, NUL-separated ------------------------------------------

def cli_seeds() -> dict:
    lines = {
        "run": ["smartstream", "run", "--config", "/etc/smartstream/smartstream.toml",
                "--pool-path", "/dev/shm/ss.pool", "--pool-slots", "64", "--cadence-ms", "10",
                "--resume-bound-ms", "3000", "--transport", "grpcio", "--log-level", "debug"],
        "demo": ["smartstream", "demo", "--calls", "2", "--seconds", "5"],
        "ctl-start": ["smartstreamctl", "start", "0f5c2a1e-uuid", "127.0.0.1:50051",
                      "--sample-rate", "16000", "--tracks", "both", "--tls",
                      "--metadata", '{"lang": "en", "n": 1}'],
        "ctl-start-dns": ["smartstreamctl", "start", "u1", "dns:///asr.example.com:443"],
        "ctl-start-ipv6-list": ["smartstreamctl", "start", "u1", "ipv6:[::1]:50051,[::2]:50051"],
        "ctl-send-payload": ["smartstreamctl", "send-payload", "u1", '{"intent": "stop"}'],
        "ctl-stop": ["smartstreamctl", "stop", "u1"],
        "ctl-status": ["smartstreamctl", "--config", "/dev/null", "status", "u1"],
        "ctl-health": ["smartstreamctl", "health"],
        "ctl-list": ["smartstreamctl", "list"],
    }
    return {k: "\0".join(v).encode() for k, v in lines.items()}


if __name__ == "__main__":
    write("h2_inbound", h2_seeds())
    write("server_message", server_message_seeds())
    write("payload_json", payload_seeds())
    write("pool_file", pool_seeds())
    write("settings", settings_seeds())
    write("cli_args", cli_seeds())
    total = sum(os.path.getsize(os.path.join(dp, f))
                for dp, _, fs in os.walk(CORPUS) for f in fs)
    print(f"corpus: {total} bytes")
