"""smartstream._tts_wire: TTS audio read off the wire without protobuf. What it
reads, it reads as protobuf does; what it does not, the fast transport hands
to protobuf, so the AI server sees one behaviour."""
import types

import pytest
from hypothesis import given, strategies as st

from smartstream.transport.fast import _Conn
from smartstream._tts_wire import read_audio
from smartstream.v1 import smartstream_pb2 as pb


def audio(pcm: bytes, rate: int) -> bytes:
    return pb.ServerMessage(audio=pb.Audio(pcm=pcm, sample_rate=rate)).SerializeToString()


def field(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + varint(len(body)) + body


def varint(v: int, pad: int = 0) -> bytes:
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v >> 7 or pad else 0))
        v >>= 7
        if not v:
            if not pad:
                return bytes(out)
            pad -= 1


@given(pcm=st.binary(max_size=3000), rate=st.integers(0, 2**32 - 1))
def test_protobufs_encoding_is_read_in_place(pcm, rate):
    wire = audio(pcm, rate)
    got = read_audio(wire)
    assert got is not None
    assert bytes(got[0]) == pcm and got[1] == rate
    assert got[0].obj is wire   # a view of the received bytes, not a copy


@st.composite
def near_audio(draw):
    """Protobuf's encoding of an Audio, then bytes changed, cut or added."""
    wire = bytearray(audio(draw(st.binary(max_size=40)), draw(st.sampled_from([0, 8000, 48000]))))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(wire)))
        op = draw(st.sampled_from(["set", "cut", "add"]))
        if op == "set" and at < len(wire):
            wire[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del wire[at:]
        else:
            wire[at:at] = draw(st.binary(min_size=1, max_size=3))
    return bytes(wire)


@given(near_audio())
def test_whatever_it_reads_protobuf_reads_the_same(wire):
    got = read_audio(wire)
    if got is not None:
        msg = pb.ServerMessage.FromString(wire)
        assert msg.WhichOneof("msg") == "audio"
        assert msg.audio.pcm == bytes(got[0]) and msg.audio.sample_rate == got[1]


PCM, RATE = b"\x01\x02\x03\x04", 16000
OTHER_SHAPES = {
    "rate before pcm": field(0x0A, b"\x10" + varint(RATE) + field(0x0A, PCM)),
    "pcm twice (the last one counts)": field(0x0A, field(0x0A, b"xx") + field(0x0A, PCM)
                                             + b"\x10" + varint(RATE)),
    "an unknown field in Audio": field(0x0A, field(0x0A, PCM) + b"\x10" + varint(RATE) + b"\x18\x01"),
    "audio twice (merged)": field(0x0A, field(0x0A, PCM)) + field(0x0A, b"\x10" + varint(RATE)),
    "an unknown field after audio": audio(PCM, RATE) + b"\x78\x01",
    "a 6-byte varint for the rate": field(0x0A, field(0x0A, PCM) + b"\x10" + varint(RATE, pad=4)),
}


@pytest.mark.parametrize("name", OTHER_SHAPES)
def test_other_shapes_of_the_same_audio_are_left_to_protobuf(name):
    wire = OTHER_SHAPES[name]
    assert read_audio(wire) is None
    msg = pb.ServerMessage.FromString(wire)
    assert (msg.audio.pcm, msg.audio.sample_rate) == (PCM, RATE)


@pytest.mark.parametrize("wire", [b"", b"\x0a", pb.ServerMessage(mark=pb.Mark(name="m"))
                                  .SerializeToString(), b"\x0a\x05\x0a\x09abc"])
def test_no_audio_or_cut_short_is_not_read(wire):
    assert read_audio(wire) is None


class Handler:
    def __init__(self):
        self.got = []

    def on_audio(self, pcm, rate, size):
        self.got.append(("audio", bytes(pcm), rate, size, type(pcm)))

    def on_message(self, msg):
        self.got.append(("message", msg.audio.pcm, msg.audio.sample_rate, msg.ByteSize(), type(msg)))


@pytest.mark.parametrize("wire", [audio(PCM, RATE), *OTHER_SHAPES.values()])
def test_the_fast_transport_delivers_every_shape_alike(wire):
    h = Handler()
    conn = types.SimpleNamespace(streams={1: types.SimpleNamespace(handler=h)}, target="test")
    _Conn.on_message(conn, 1, memoryview(wire))   # the H2Connection's call, on a stand-in _Conn
    [(how, pcm, rate, size, kind)] = h.got
    assert (pcm, rate) == (PCM, RATE)
    assert how == ("audio" if read_audio(wire) else "message")
    assert kind is (memoryview if how == "audio" else pb.ServerMessage)
    assert size <= len(wire)
