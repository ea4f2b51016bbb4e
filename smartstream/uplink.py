"""Caller audio of one call on its way to the AI server.

Converts the sample rate where the call asked for another one, and keeps the
last resume_bound_ms of frames: when a stream breaks, the resumed stream
replays them (at least once: the AI server skips sequences it already has),
so no frame inside the bound is lost. Frames pushed out of the window before
any stream carried them are counted as dropped.
"""
from __future__ import annotations

from collections import deque

from ._resample import Resampler


class Uplink:
    def __init__(self, channel_rate: int, out_rate: int, tracks: list[int], bound_ms: int):
        self.out_rate = out_rate
        self._resample = {t: Resampler(channel_rate, out_rate) for t in tracks} \
            if out_rate != channel_rate else {}
        self._bound_bytes = bound_ms * out_rate * 2 // 1000 * len(tracks)
        self._window: deque = deque()   # [track, seq, ts_ns, pcm, sent]
        self._window_bytes = 0
        self.next_seq = [0, 0]          # per track: the next sequence the ring will give
        self.dropped = 0

    def push(self, track: int, seq: int, ts_ns: int, pcm: bytes, sent: bool) -> bytes:
        """Take a frame from the ring; returns its PCM at the delivered rate."""
        rs = self._resample.get(track)
        if rs:
            pcm = rs(pcm)
        self.next_seq[track] = seq + 1
        self._window.append([track, seq, ts_ns, pcm, sent])
        self._window_bytes += len(pcm)
        while self._window_bytes > self._bound_bytes and len(self._window) > 1:
            old = self._window.popleft()
            self._window_bytes -= len(old[3])
            if not old[4]:
                self.dropped += 1
        return pcm

    def replay(self):
        """Every frame in the window, oldest first, now marked sent."""
        for entry in self._window:
            entry[4] = True
            yield entry[0], entry[1], entry[2], entry[3]

    def first_seq(self, track: int) -> int:
        """Sequence a resumed stream starts from on this track."""
        return next((e[1] for e in self._window if e[0] == track), self.next_seq[track])

    def unsent(self) -> int:
        return sum(1 for e in self._window if not e[4])
