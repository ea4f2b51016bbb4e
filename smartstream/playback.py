"""Playback a bot can steer: the AI server's playback messages applied to a
call's Playout, and what playout tells back.

Server -> Audio, Mark, Clear, PausePlayback, ContinuePlayback,
GetPlaybackStatus, PlaybackFlowControl. Gateway -> MarkReached,
PlaybackCleared, PlaybackDrained, PlaybackDropped, PlaybackFlow,
PlaybackStatus (see the proto for what each means).
"""
from __future__ import annotations

from . import _ring
from .playout import Playout
from .v1 import smartstream_pb2 as pb

REQUEST_ID_MAX = 64        # bytes of GetPlaybackStatus.request_id
HIGH_WATERMARK_MS = 5000   # PlaybackFlowControl's defaults
LOW_WATERMARK_MS = 1000
MARKS_MAX = 1024           # marks queued and not yet reached, per call


class Playback:
    def __init__(self, call, playout: Playout):
        self.call, self.playout = call, playout
        self.metrics = call.gw.metrics
        self.flow = None           # (high ms, low ms) once the server asked for back-pressure
        self.flow_off = False      # an XOFF is in force
        self._odd_counted = 0

    def audio(self, pcm, rate: int) -> None:
        dropped = self.playout.add_audio(pcm, rate)
        self._count_odd_bytes()
        if dropped:
            self.metrics.dropped("tts_overflow")
            self.metrics.tts_dropped_seconds.inc(dropped.ms / 1000)
            self.call.tell(pb.GatewayMessage(playback_dropped=pb.PlaybackDropped(
                dropped_ms=dropped.ms, position_ms=dropped.position_ms,
                after_mark=dropped.after_mark)))
        self._check_flow()

    def mark(self, name: str) -> None:
        if self.playout.marks_queued >= MARKS_MAX:
            self.call.refuse("mark", pb.Refused.CODE_RATE_LIMITED,
                             f"{MARKS_MAX} marks already waiting to be reached")
            return
        self.playout.add_mark(name)

    def clear(self) -> None:
        c = self.playout.clear()
        self._count_odd_bytes()
        for name in c.marks:   # as before PlaybackCleared existed: servers rely on them
            self.call.tell(pb.GatewayMessage(mark=pb.MarkReached(name=name, cleared=True)))
        self.call.tell(pb.GatewayMessage(cleared=pb.PlaybackCleared(
            dropped_ms=c.dropped_ms, heard_ms=c.heard_ms, discarded_marks=c.marks)))
        self._check_flow()

    def pause(self, paused: bool) -> None:
        self.playout.pause(paused)

    def status(self, request_id: str) -> None:
        if len(request_id.encode()) > REQUEST_ID_MAX:
            self.call.refuse("get_playback_status", pb.Refused.CODE_INVALID,
                             f"request_id over {REQUEST_ID_MAX} bytes")
            return
        p = self.playout
        self.call.tell(pb.GatewayMessage(playback_status=pb.PlaybackStatus(
            request_id=request_id, queued_ms=p.waiting_ms(), played_ms=p.played_ms(),
            paused=p.paused, flow_off=self.flow_off)))

    def flow_control(self, fc: pb.PlaybackFlowControl) -> None:
        if not fc.enabled:
            self.flow = None
            self._set_flow(False)   # an XOFF in force is lifted, never left hanging
            return
        high = fc.high_watermark_ms or HIGH_WATERMARK_MS
        low = fc.low_watermark_ms or LOW_WATERMARK_MS
        if low >= high:
            self.call.refuse("flow_control", pb.Refused.CODE_INVALID,
                             f"low_watermark_ms {low} is not below high_watermark_ms {high}")
            return
        self.flow = (high, low)
        self._check_flow()

    def tick(self, now_ns: int) -> bool:
        """Pace, and tell what playout passed. Returns whether it needs the next tick."""
        for name in self.playout.tick(now_ns):
            self.call.tell(pb.GatewayMessage(mark=pb.MarkReached(name=name)))
            self.call.post(_ring.CTL_MARK, name.encode())
        drained = self.playout.take_drained()
        if drained:
            self.call.tell(pb.GatewayMessage(drained=pb.PlaybackDrained(
                played_ms=drained[0], last_mark=drained[1])))
        self._check_flow()
        return self.playout.busy

    def _check_flow(self) -> None:
        if self.flow is None:
            return
        waiting = self.playout.waiting_ms()
        high, low = self.flow
        if waiting >= high or (self.flow_off and waiting > low):
            self._set_flow(True, waiting)
        else:
            self._set_flow(False, waiting)

    def _set_flow(self, off: bool, waiting: int | None = None) -> None:
        if off != self.flow_off:
            self.flow_off = off
            queued = self.playout.waiting_ms() if waiting is None else waiting
            self.call.tell(pb.GatewayMessage(flow=pb.PlaybackFlow(flow_off=off, queued_ms=queued)))

    def _count_odd_bytes(self) -> None:
        """A lone odd byte dropped (rate change or Clear): counted, not a sample lost."""
        lost = self.playout.odd_bytes_dropped - self._odd_counted
        if lost:
            self.metrics.dropped("tts_odd_byte", lost)
            self._odd_counted += lost
