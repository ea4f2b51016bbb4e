"""The AI server's audio on its way to the caller's ear.

Audio is queued here per call and the downlink ring is topped up to a small
lead each tick, so a 10 s TTS burst needs no 10 s ring and Clear can drop it
all at once. After silence, playout waits for a prebuffer (or for the
prebuffer time to pass) so audio the bot paces in real time plays without
gaps. Marks sit at a byte position of the stream; they are reached when the
module's read position (the ring head) passes them, i.e. after real playout.
"""
from __future__ import annotations

import time
from collections import deque

from ._resample import Resampler


class Playout:
    def __init__(self, pool, slot: int, gen: int, channel_rate: int, prebuffer_ms: int,
                 max_queue_ms: int, latency=None):
        self._pool, self._slot, self._gen = pool, slot, gen
        self.rate = channel_rate
        self._lead = prebuffer_ms * channel_rate * 2 // 1000
        self._prebuffer_ns = prebuffer_ms * 1_000_000
        self._max_queue = max_queue_ms * channel_rate * 2 // 1000
        head, used = pool.tts_position(slot)
        self._written = head + used         # ring position of the next byte we write
        self._queue = bytearray()
        self._marks: deque = deque()        # (position, name)
        self._arrivals: deque = deque()     # (position of a message's last byte, arrival ns)
        self._latency = latency             # a Histogram, or None
        self._pending_since = None           # first audio after silence, for the prebuffer
        self._resample: dict[int, Resampler] = {}
        self.dropped_bytes = 0               # over max_queue_ms: counted, never silent
        self.received_bytes = 0

    def add_audio(self, pcm: bytes, rate: int) -> None:
        if rate != self.rate:
            rs = self._resample.get(rate) or self._resample.setdefault(rate, Resampler(rate, self.rate))
            pcm = rs(pcm)
        self.received_bytes += len(pcm)
        room = self._max_queue - len(self._queue)
        if len(pcm) > room:
            self.dropped_bytes += len(pcm) - max(room, 0)
            pcm = pcm[:max(room, 0) & ~1]
        now = time.monotonic_ns()
        if pcm and self._pending_since is None and not self._queue:
            self._pending_since = now
        self._queue += pcm
        if self._latency is not None and pcm:
            self._arrivals.append((self._written + len(self._queue), now))

    def add_mark(self, name: str) -> None:
        self._marks.append((self._written + len(self._queue), name))

    def clear(self) -> tuple[int, list[str]]:
        """Barge-in: drop the queue and the ring now. Returns (ms dropped, marks cleared)."""
        dropped = len(self._queue) + self._pool.clear_tts(self._slot, self._gen)
        self._queue.clear()
        self._pending_since = None
        cleared = [name for _, name in self._marks]
        self._marks.clear()
        self._arrivals.clear()
        return dropped * 1000 // (2 * self.rate), cleared

    def tick(self, now_ns: int) -> list[str]:
        """Top the ring up; returns the marks playout has passed."""
        head, used = self._pool.tts_position(self._slot)
        if self._queue:
            primed = used or len(self._queue) >= self._lead or \
                now_ns - (self._pending_since or now_ns) >= self._prebuffer_ns
            room = self._lead - used
            if primed and room > 0:
                n = self._pool.write_tts(self._slot, self._gen, self._queue[:room])
                del self._queue[:n]
                self._written += n
                self._pending_since = None
        while self._arrivals and self._arrivals[0][0] <= head:
            self._latency.observe((now_ns - self._arrivals.popleft()[1]) / 1e9)
        reached = []
        while self._marks and self._marks[0][0] <= head:
            reached.append(self._marks.popleft()[1])
        return reached

    @property
    def busy(self) -> bool:
        """Anything left to pace, or to watch playout for."""
        return bool(self._queue or self._marks or self._arrivals)

    @property
    def queued_bytes(self) -> int:
        return len(self._queue)
