"""G.711 mu-law <-> PCM16, by lookup tables built once with numpy.

The tables reproduce the CCITT reference coder (the one audioop used), so a
peer decoding with audioop or Pipecat gets exactly the samples we meant.
audioop itself is deprecated and gone in Python 3.13, hence our own.
"""
import numpy as np

_BIAS = 0x84
_CLIP = 8159
_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def _encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2   # the reference coder is 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _CLIP) + (_BIAS >> 2)
    seg = np.searchsorted(_SEG_END, mag)                  # first segment whose end >= mag
    code = (seg << 4) | ((mag >> (seg + 1)) & 0xF)
    return (np.where(seg >= 8, 0x7F, code) ^ mask).astype(np.uint8)


def _decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype("<i2")


_ENCODE = _encode_table()   # index: sample + 32768
_DECODE = _decode_table()   # index: mu-law byte


def encode(pcm: bytes) -> bytes:
    """PCM16 little-endian (a trailing odd byte is the caller's to keep) -> mu-law."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
    return _ENCODE[samples.astype(np.int32) + 32768].tobytes()


def decode(ulaw: bytes) -> bytes:
    """mu-law -> PCM16 little-endian, two bytes per input byte."""
    return _DECODE[np.frombuffer(ulaw, dtype=np.uint8)].tobytes()
