# cython: language_level=3, boundscheck=False, wraparound=False
"""ServerMessage{audio} read off the wire without protobuf, so the pcm stays
a view of the received bytes and TTS is copied once, into the playout queue
(protobuf would copy it twice: into the message, then out on each read).

Only the shape protobuf encoders write is read here: ServerMessage field 1
(audio) filling the message, and in it pcm (field 1, absent when empty) then
sample_rate (field 2, absent when 0), nothing else. Any other encoding
(fields reordered, repeated or unknown, a varint over 5 bytes) is None and
protobuf decodes it: both ways read a message the same."""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport uint8_t, uint64_t

cdef enum:
    AUDIO = 0x0A         # ServerMessage.audio: field 1, length-delimited
    PCM = 0x0A           # Audio.pcm: field 1, length-delimited
    SAMPLE_RATE = 0x10   # Audio.sample_rate: field 2, varint


cdef inline size_t varint(const uint8_t *m, size_t at, size_t end, uint64_t *v) noexcept nogil:
    """The end of the varint of at most 5 bytes at m[at], its value in v; 0 if not one."""
    cdef int shift = 0
    v[0] = 0
    while at < end and shift < 35:
        v[0] |= <uint64_t>(m[at] & 0x7F) << shift
        at += 1
        if m[at - 1] < 0x80:
            return at
        shift += 7
    return 0


def read_audio(data):
    """(pcm, sample_rate) of a ServerMessage{audio} in that shape, else None;
    pcm is a memoryview of data."""
    cdef Py_buffer b
    cdef const uint8_t *m
    cdef size_t end, at, pcm_at = 0, pcm_end = 0
    cdef uint64_t n, rate = 0
    PyObject_GetBuffer(data, &b, PyBUF_SIMPLE)
    try:
        m, end = <const uint8_t *>b.buf, <size_t>b.len
        if end < 2 or m[0] != AUDIO:
            return None
        at = varint(m, 1, end, &n)
        if at == 0 or at + n != end:
            return None
        pcm_at = pcm_end = at
        if at < end and m[at] == PCM:
            at = varint(m, at + 1, end, &n)
            if at == 0 or at + n > end:
                return None
            pcm_at, pcm_end = at, at + n
            at = pcm_end
        if at < end and m[at] == SAMPLE_RATE:
            at = varint(m, at + 1, end, &rate)
            if at == 0 or rate >> 32:
                return None
        if at != end:
            return None
    finally:
        PyBuffer_Release(&b)
    return memoryview(data)[pcm_at:pcm_end], rate
