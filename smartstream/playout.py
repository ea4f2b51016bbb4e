"""The AI server's audio on its way to the caller's ear.

Audio is queued here per call and the downlink ring is topped up to a small
lead each tick, so a 10 s TTS burst needs no 10 s ring and Clear can drop it
all at once. After silence, playout waits for a prebuffer (or for the
prebuffer time to pass) so audio the bot paces in real time plays without
gaps. Marks sit at a byte position of the stream; they are reached when the
module's read position (the ring head) passes them, i.e. after real playout.
Pause stops the module's reads (a flag in the slot) and the top-ups, so the
ring and the queue keep their place.

Positions are ring byte positions (free-running); an "utterance" is what was
played since the queue last ran dry or was cleared.
"""
from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

from ._resample import Resampler

# Latency samples waiting for playout (one per Audio message): past this many a
# flood of tiny messages is sampled no more, so the deque stays bounded.
ARRIVALS_MAX = 4096


class Dropped(NamedTuple):
    """Audio over the queue bound: what PlaybackDropped tells."""
    ms: int
    position_ms: int
    after_mark: str


class Cleared(NamedTuple):
    dropped_ms: int
    heard_ms: int
    marks: list


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
        self._start = self._head = head     # where this daemon took the call over; last seen head
        self._utterance = head              # where the current utterance began
        self._cleared = 0                   # ring bytes Clear skipped: never played
        self._playing = False               # written since the last drain or clear
        self._queue = bytearray()
        self._marks: deque = deque()        # (position, name)
        self._arrivals: deque = deque()     # (position of a message's last byte, arrival ns)
        self._latency = latency             # a Histogram, or None
        self._pending_since = None           # first audio after silence, for the prebuffer
        self._resample: dict[int, Resampler] = {}
        self._odd = None                     # (AI rate, the odd byte waiting for its pair)
        self.paused = pool.tts_paused(slot)  # a restarted daemon keeps the server's pause
        self.last_mark = ""                  # last mark reached in this utterance
        self._last_queued_mark = ""
        self.dropped_bytes = 0               # over max_queue_ms: counted, never silent
        self.odd_bytes_dropped = 0           # a lone byte whose pair never came
        self.received_bytes = 0

    def _ms(self, nbytes: int) -> int:
        return nbytes * 1000 // (2 * self.rate)

    def _pair_odd_byte(self, pcm, rate: int):
        """Audio of any length: a trailing odd byte waits for the next Audio of
        the same rate; a rate change drops it (counted)."""
        if self._odd is not None:
            odd_rate, byte = self._odd
            self._odd = None
            if odd_rate == rate:
                pcm = byte + pcm
            else:
                self.odd_bytes_dropped += 1
        if len(pcm) % 2:
            self._odd = (rate, bytes(pcm[-1:]))   # pcm may be a view of bytes read over next
            pcm = pcm[:-1]
        return pcm

    def add_audio(self, pcm, rate: int) -> Dropped | None:
        """Queue the server's audio; returns what the bound made us drop, if anything."""
        pcm = self._pair_odd_byte(pcm, rate)
        if rate != self.rate:
            rs = self._resample.get(rate) or self._resample.setdefault(rate, Resampler(rate, self.rate))
            pcm = rs(pcm)
        self.received_bytes += len(pcm)
        room = max(self._max_queue - len(self._queue), 0) & ~1
        dropped = None
        if len(pcm) > room:
            lost = len(pcm) - room
            self.dropped_bytes += lost
            pcm = pcm[:room]
            dropped = Dropped(-self._ms(-lost),   # rounded up: a drop is never told as 0 ms
                              self._ms(self._end() + room - self._start),
                              self._last_queued_mark)
        now = time.monotonic_ns()
        if pcm and self._pending_since is None and not self._queue:
            self._pending_since = now
        self._queue += pcm
        if self._latency is not None and pcm and len(self._arrivals) < ARRIVALS_MAX:
            self._arrivals.append((self._end(), now))
        return dropped

    def _end(self) -> int:
        """Ring position just after the last byte queued."""
        return self._written + len(self._queue)

    @property
    def marks_queued(self) -> int:
        return len(self._marks)

    def add_mark(self, name: str) -> None:
        self._marks.append((self._end(), name))
        self._last_queued_mark = name

    def clear(self) -> Cleared:
        """Barge-in: drop the queue and the ring now. Returns what was dropped,
        what the caller heard of this utterance and the marks never reached."""
        in_ring = self._pool.clear_tts(self._slot, self._gen)
        self._cleared += in_ring
        heard = self._written - in_ring - self._utterance
        dropped = len(self._queue) + in_ring
        self._queue.clear()
        if self._odd is not None:
            self._odd = None
            self.odd_bytes_dropped += 1
        self._pending_since = None
        cleared = [name for _, name in self._marks]
        self._marks.clear()
        self._arrivals.clear()
        self._utterance = self._head = self._written
        self._playing = False
        self.last_mark = ""
        return Cleared(self._ms(dropped), self._ms(heard), cleared)

    def pause(self, paused: bool) -> None:
        """The module stops (or resumes) reading: nothing is lost or repeated."""
        self.paused = paused
        self._pool.set_tts_paused(self._slot, self._gen, paused)

    def tick(self, now_ns: int) -> list[str]:
        """Top the ring up; returns the marks playout has passed."""
        head, used = self._pool.tts_position(self._slot)
        self._head = head
        if self._queue and not self.paused:
            primed = used or len(self._queue) >= self._lead or \
                now_ns - (self._pending_since or now_ns) >= self._prebuffer_ns
            room = self._lead - used
            if primed and room > 0:
                # A view, not a slice: the ring write is the only copy. It is
                # released before the del below resizes the queue.
                n = self._pool.write_tts(self._slot, self._gen, memoryview(self._queue)[:room])
                del self._queue[:n]
                self._written += n
                self._pending_since = None
                self._playing = self._playing or n > 0
        while self._arrivals and self._arrivals[0][0] <= head:
            self._latency.observe((now_ns - self._arrivals.popleft()[1]) / 1e9)
        reached = []
        while self._marks and self._marks[0][0] <= head:
            reached.append(self._marks.popleft()[1])
        if reached:
            self.last_mark = reached[-1]
        return reached

    def take_drained(self) -> tuple[int, str] | None:
        """After tick: (ms played in the utterance, its last mark) once its last
        sample has been taken by the module, else None."""
        if not self._playing or self._queue or self._head < self._written:
            return None
        played, mark = self._ms(self._head - self._utterance), self.last_mark
        self._utterance, self._playing, self.last_mark = self._head, False, ""
        return played, mark

    @property
    def busy(self) -> bool:
        """Anything left to pace, or to watch playout for."""
        return bool(self._queue or self._marks or self._arrivals or self._playing)

    @property
    def queued_bytes(self) -> int:
        return len(self._queue)

    def waiting_ms(self) -> int:
        """Queued and not yet played: the queue and what the ring holds."""
        return self._ms(len(self._queue) + self._pool.tts_position(self._slot)[1])

    def played_ms(self) -> int:
        """Played since this daemon took the call over."""
        return self._ms(self._pool.tts_position(self._slot)[0] - self._start - self._cleared)
