"""Encoding and decoding 20 ms frames: our AudioFrame against the same audio
as base64 inside a Twilio Media Streams JSON message.

    python3 -m pytest benchmarks/bench_serialization.py

Encoding, per round of FRAMES frames of one call:
  twilio_json_base64   base64 + json.dumps, what a bolt-on gateway does per frame
  audioframe_protobuf  GatewayMessage{audio} with the protobuf library (upb)
  audioframe_compiled  what the daemon does: H2Connection.send_audio writes the
                       protobuf bytes and the gRPC prefix straight into the
                       stream's send buffer (checked byte-equal to protobuf's)
Decoding, one frame: json.loads + base64 against protobuf's parser.
"""
import base64
import json
import os

import pytest

from smartstream._h2 import H2Connection
from smartstream.v1 import smartstream_pb2 as pb

PCM = os.urandom(640)          # 20 ms of 16 kHz PCM16
FRAMES = 50                    # one second of one call: a round of the encode benchmarks
SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def twilio_encode(seq, ts, pcm):
    return json.dumps({
        "event": "media", "sequenceNumber": str(seq), "streamSid": SID,
        "media": {"track": "inbound", "chunk": str(seq), "timestamp": str(ts // 1_000_000),
                  "payload": base64.b64encode(pcm).decode()}})


def twilio_decode(text):
    msg = json.loads(text)
    return base64.b64decode(msg["media"]["payload"])


def ours_encode(seq, ts, pcm):
    return pb.GatewayMessage(audio=pb.AudioFrame(
        track=pb.TRACK_INBOUND, sequence=seq, capture_ns=ts, pcm=pcm)).SerializeToString()


def ours_decode(data):
    return pb.GatewayMessage.FromString(data).audio.pcm


class _Ignore:
    """An H2Connection handler that is never called here (no transport)."""
    def __getattr__(self, name):
        return lambda *a, **k: None


def compiled_stream():
    """A stream of a fresh connection: its send buffer starts empty, as each
    tick's does once the previous tick's flush took it."""
    conn = H2Connection("bench:1", "http", _Ignore())
    return (conn, conn.open_stream("/smartstream.v1.AIStream/Stream")), {}


def compiled_encode_batch(conn, sid):
    # The daemon calls send_audio from C (Router.deliver); send_audio_py adds
    # one Python call per frame, so this overstates our side a little.
    for seq in range(FRAMES):
        conn.send_audio_py(sid, pb.TRACK_INBOUND, seq, 987654321000, PCM)


def encode_batch(fn):
    def batch():
        for seq in range(FRAMES):
            fn(seq, 987654321000, PCM)
    return batch


@pytest.mark.benchmark(group="encode")
@pytest.mark.parametrize("name", ["twilio_json_base64", "audioframe_protobuf", "audioframe_compiled"])
def test_encode(benchmark, name):
    """FRAMES frames of one call, encoded for the wire (per round)."""
    if name == "audioframe_compiled":
        benchmark.pedantic(compiled_encode_batch, setup=compiled_stream, rounds=2000)
        conn, sid = compiled_stream()[0]
        compiled_encode_batch(conn, sid)
        expected = sum(5 + len(ours_encode(seq, 987654321000, PCM)) for seq in range(FRAMES))
        assert conn.stream_buffered(sid) == expected   # the same bytes protobuf would write
    else:
        benchmark(encode_batch(twilio_encode if name == "twilio_json_base64" else ours_encode))
    benchmark.extra_info["frames_per_round"] = FRAMES


@pytest.mark.benchmark(group="decode")
@pytest.mark.parametrize("name,enc,dec", [
    ("twilio_json_base64", twilio_encode, twilio_decode),
    ("audioframe_protobuf", ours_encode, ours_decode)])
def test_decode(benchmark, name, enc, dec):
    data = enc(123456, 987654321000, PCM)
    assert benchmark(dec, data) == PCM
