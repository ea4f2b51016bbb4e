"""ServerMessage{audio} read off the wire without protobuf, so the pcm stays
a view of the received bytes and TTS is copied once, into the playout queue
(protobuf would copy it twice: into the message, then out on each read).

Only the shape protobuf encoders write is read here: ServerMessage field 1
(audio) filling the message, and in it pcm (field 1, absent when empty) then
sample_rate (field 2, absent when 0), nothing else. Any other encoding
(fields reordered, repeated or unknown, a varint over 5 bytes) is None and
protobuf decodes it: both ways read a message the same."""
from __future__ import annotations

AUDIO = 0x0A         # ServerMessage.audio: field 1, length-delimited
PCM = 0x0A           # Audio.pcm: field 1, length-delimited
SAMPLE_RATE = 0x10   # Audio.sample_rate: field 2, varint


def _varint(m: memoryview, at: int, end: int) -> tuple[int | None, int]:
    """(value, end of it) of the varint of at most 5 bytes at m[at]; (None, at) if not one."""
    v = shift = 0
    while at < end and shift < 35:
        b = m[at]
        at += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, at
        shift += 7
    return None, at


def read_audio(data) -> tuple[memoryview, int] | None:
    """(pcm, sample_rate) of a ServerMessage{audio} in that shape, else None."""
    m = memoryview(data)
    end = len(m)
    if end < 2 or m[0] != AUDIO:
        return None
    n, at = _varint(m, 1, end)
    if n is None or at + n != end:
        return None
    pcm, rate = m[at:at], 0
    if at < end and m[at] == PCM:
        n, at = _varint(m, at + 1, end)
        if n is None or at + n > end:
            return None
        pcm, at = m[at:at + n], at + n
    if at < end and m[at] == SAMPLE_RATE:
        rate, at = _varint(m, at + 1, end)
        if rate is None or rate >> 32:
            return None
    return (pcm, rate) if at == end else None
