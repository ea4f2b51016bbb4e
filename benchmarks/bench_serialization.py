"""Encoding and decoding one 20 ms frame: our AudioFrame (protobuf) against the
same audio as base64 inside a Twilio Media Streams JSON message.

    python3 -m pytest benchmarks/bench_serialization.py
"""
import base64
import json
import os

import pytest

from smartstream.v1 import smartstream_pb2 as pb

PCM = os.urandom(640)          # 20 ms of 16 kHz PCM16
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


@pytest.mark.benchmark(group="encode")
@pytest.mark.parametrize("name,fn", [("twilio_json_base64", twilio_encode), ("audioframe_protobuf", ours_encode)])
def test_encode(benchmark, name, fn):
    out = benchmark(fn, 123456, 987654321000, PCM)
    benchmark.extra_info["bytes_on_wire"] = len(out)


@pytest.mark.benchmark(group="decode")
@pytest.mark.parametrize("name,enc,dec", [
    ("twilio_json_base64", twilio_encode, twilio_decode),
    ("audioframe_protobuf", ours_encode, ours_decode)])
def test_decode(benchmark, name, enc, dec):
    data = enc(123456, 987654321000, PCM)
    assert benchmark(dec, data) == PCM
