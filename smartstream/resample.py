"""Streaming sample-rate conversion of PCM16 mono, keeping filter state
across frames so that frame edges make no clicks."""
from __future__ import annotations

import numpy as np
import soxr


class Resampler:
    def __init__(self, in_rate: int, out_rate: int):
        self.in_rate, self.out_rate = in_rate, out_rate
        self._rs = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")

    def __call__(self, pcm: bytes, last: bool = False) -> bytes:
        return self._rs.resample_chunk(np.frombuffer(pcm, dtype="<i2"), last=last).tobytes()
