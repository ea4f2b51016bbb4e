"""One call: its slot in the pool and its stream to the AI server.

The Gateway hands a Call what the tick drained from the call's rings; the
Call sends it on its Stream, and turns what the AI server answers into TTS
for the Playout and control messages for the module. When the stream breaks,
the Call keeps the call going, retries with backoff and resumes.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import struct
import time

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import DecodeError

from . import _ring
from .playout import Playout
from .target import TargetError, parse_target
from ._uplink import Uplink
from .v1 import smartstream_pb2 as pb

log = logging.getLogger("smartstream.call")

# The server is gone or overloaded: worth another try. Anything else (it
# rejected us, it does not implement the service) would fail again the same way.
RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL",
             "UNKNOWN", "CANCELLED"}
AI_RATES = {8000, 16000, 24000, 48000}
MAX_AUDIO_BYTES = 1 << 20          # one Audio message: ~11 s at 48 kHz
MAX_NAME = 256
PENDING_CONTROL_MAX = 256          # control messages kept while the stream is down
END_GRACE_S = 1.0                  # a server told StreamEnd gets this long to finish the RPC
TRACK_PB = {_ring.TRACK_IN: pb.TRACK_INBOUND, _ring.TRACK_OUT: pb.TRACK_OUTBOUND}


class ProtocolError(Exception):
    """The AI server sent something the contract does not allow."""


class Call:
    def __init__(self, gateway, info: dict, resumed: bool):
        self.gw = gateway
        cfg = gateway.config
        self.slot, self.gen, self.uuid = info["slot"], info["generation"], info["uuid"]
        self.info = info
        self.log = logging.LoggerAdapter(log, {"uuid": self.uuid})
        self.tracks = [t for t in (_ring.TRACK_IN, _ring.TRACK_OUT) if info["tracks"] & (1 << t)]
        self.out_rate = info["requested_rate"] or info["channel_rate"]
        self.uplink = Uplink(info["channel_rate"], self.out_rate, self.tracks, cfg.resume_bound_ms)
        self.playout = Playout(gateway.pool, self.slot, self.gen, info["channel_rate"],
                               cfg.prebuffer_ms, cfg.max_tts_queue_ms, gateway.metrics.ai_to_playout)
        self.resumed = resumed
        self.state = "connecting"
        self.stream = None
        self.router = gateway.router
        self._pending_control: list[pb.GatewayMessage] = []
        self._retry_at = 0
        self._retry_ms = cfg.retry_initial_ms
        self._down_since = None
        self.frames_received = 0
        self.frames_sent = 0           # as of the stream's end; live count in the router
        self.reconnects = 0
        self.seen_overruns = self.seen_underruns = 0   # module counters already in the metrics
        self.end_reason = None

    # -- stream life cycle -------------------------------------------------

    def connect(self) -> None:
        try:
            target = parse_target(self.info["target"])
        except TargetError as e:
            self.fail(str(e))
            return
        self.gw.pool.set_link(self.slot, self.gen, _ring.LINK_CONNECTING)
        self.stream = self.gw.transport.open_stream(
            target, self, tls=bool(self.info["flags"] & _ring.SLOT_F_TLS))
        self.stream.send(pb.GatewayMessage(start=self._start_message()))
        for track, seq, ts, pcm in self.uplink.replay():
            self.stream.send_audio(TRACK_PB[track], seq, ts, pcm)
        for msg in self._pending_control:
            self.stream.send(msg)
        self._pending_control.clear()
        self.stream.route(self.router, self.slot, self.uplink)
        self.state = "streaming"
        self._down_since = None
        self.gw.pool.set_link(self.slot, self.gen, _ring.LINK_STREAMING)
        self.log.info("opening %s stream to %s", "resumed" if self.resumed else "new", target)

    def _start_message(self) -> pb.StreamStart:
        info = self.info
        start = pb.StreamStart(
            call_uuid=self.uuid, caller=info["caller"], callee=info["callee"],
            codec=info["codec"], channel_sample_rate=info["channel_rate"],
            sample_rate=self.out_rate, tracks=[TRACK_PB[t] for t in self.tracks],
            resumed=self.resumed, next_sequence=self.uplink.first_seq(_ring.TRACK_IN),
            next_sequence_outbound=self.uplink.first_seq(_ring.TRACK_OUT))
        if info["metadata"]:
            try:
                start.metadata.update(json.loads(info["metadata"]))
            except (ValueError, TypeError, AttributeError) as e:
                self.log.warning("start metadata is not a JSON object, not sent: %s", e)
        return start

    def on_closed(self, code: str, detail: str) -> None:
        """The transport says the stream is over."""
        if self.state in ("ended", "failed"):
            return
        self.stream = None
        self.router.route(self.slot, self.uplink)   # frames wait in the window
        if code == "OK":
            self.fail("AI server closed the stream")
        elif code in RETRYABLE and self._may_retry():
            self.state = "retrying"
            self.resumed = True
            self._down_since = self._down_since or time.monotonic()
            self._retry_at = time.monotonic() + self._retry_ms * random.uniform(0.8, 1.2) / 1000
            self._retry_ms = min(self._retry_ms * 2, self.gw.config.retry_max_ms)
            self.reconnects += 1
            self.gw.wake(self)
            self.gw.pool.set_link(self.slot, self.gen, _ring.LINK_RETRYING)
            self.gw.metrics.stream_error(code)
            self.gw.metrics.reconnects.labels(code).inc()
            self.log.warning("stream broke (%s: %s); retrying in %d ms", code, detail,
                             (self._retry_at - time.monotonic()) * 1000)
        else:
            self.gw.metrics.stream_error(code)
            self.fail(f"stream failed: {code}: {detail}")

    def _may_retry(self) -> bool:
        give_up = self.gw.config.retry_give_up_s
        return not give_up or self._down_since is None or \
            time.monotonic() - self._down_since < give_up

    def end(self, reason: int, detail: str = "") -> None:
        """The call is over for us: StreamEnd last, then half-close."""
        if self.state in ("ended", "failed"):
            return
        if self.stream is not None:
            self.stream.send(pb.GatewayMessage(end=pb.StreamEnd(reason=reason, detail=detail)))
            self.stream.finish()
            self.stream = None
        elif self.state == "retrying":
            self.log.warning("call ended while the stream was down: %d frames may not have "
                             "reached the AI server", len(self.uplink.replay()))
        self.frames_sent = self.router.frames_sent(self.slot)
        self.router.unroute(self.slot)
        self.state = "ended"
        self.end_reason = reason

    def fail(self, reason: str, end: pb.StreamEnd | None = None) -> None:
        """Give up on the stream; the call itself goes on untouched. With end, the
        server is told why (StreamEnd, half-close) and gets END_GRACE_S to finish."""
        self.log.error("stream to %s stopped: %s", self.info["target"], reason)
        if self.stream is not None:
            if end is None:
                self.stream.cancel(reason)
            else:
                self.stream.send(pb.GatewayMessage(end=end))
                self.stream.finish()
                asyncio.get_running_loop().call_later(END_GRACE_S, self.stream.cancel, reason)
            self.stream = None
        self.state = "failed"
        self.router.route(self.slot, self.uplink)
        self.gw.pool.set_link(self.slot, self.gen, _ring.LINK_FAILED)
        self.post(_ring.CTL_ERROR, reason.encode()[:_ring.CTL_MSG_MAX])

    def refuse(self, kind: str, code: int, detail: str) -> None:
        """A server message the stream goes on without (proto: Refused)."""
        self.gw.metrics.refused.labels(kind, pb.Refused.Code.Name(code)).inc()
        if self.stream is not None:
            self.stream.send(pb.GatewayMessage(refused=pb.Refused(message=kind, code=code, detail=detail)))

    def post(self, type_: int, data: bytes) -> None:
        """A control message to the module; a full ring is logged, not fatal."""
        try:
            self.gw.pool.post_control(self.slot, self.gen, type_, data)
        except _ring.RingError as e:
            self.log.error("control message %d to the module not delivered: %s", type_, e)

    # -- from the module, once per tick ------------------------------------

    def send_frame(self, track: int, seq: int, ts_ns: int, pcm: bytes) -> None:
        """A frame the Router routed to Python (the grpcio transport)."""
        self.stream.send_audio(TRACK_PB[track], seq, ts_ns, pcm)

    def on_control(self, type_: int, data: bytes) -> None:
        msg = self._control_message(type_, data)
        if msg is None:
            return
        if self.state == "streaming":
            self.stream.send(msg)
        elif self.state in ("connecting", "retrying"):
            if len(self._pending_control) >= PENDING_CONTROL_MAX:
                self.log.error("control message dropped: %d already waiting for the stream",
                               PENDING_CONTROL_MAX)
                self.gw.metrics.dropped("control_backlog")
            else:
                self._pending_control.append(msg)

    def _control_message(self, type_: int, data: bytes):
        if type_ == _ring.CTL_PAYLOAD:
            try:
                obj = json.loads(data)
                if not isinstance(obj, dict):
                    raise ValueError("payload must be a JSON object")
                s = struct_pb2.Struct()
                s.update(obj)
                return pb.GatewayMessage(payload=pb.Payload(data=s))
            # OverflowError: an integer no double holds; RecursionError and
            # DecodeError: nesting deeper than json or protobuf allow.
            except (ValueError, TypeError, OverflowError, RecursionError, DecodeError) as e:
                self.log.error("send_payload rejected: %s", e)
                self.post(_ring.CTL_ERROR, f"send_payload rejected: {e}".encode())
                self.gw.metrics.dropped("bad_payload")
                return None
        if type_ == _ring.CTL_DTMF and len(data) == 5:
            digit, ms = struct.unpack("<cI", data)
            if digit in b"0123456789*#ABCDabcd":
                return pb.GatewayMessage(dtmf=pb.Dtmf(digit=digit.decode().upper(), duration_ms=ms))
        self.log.error("malformed control message %d (%d bytes) from the module", type_, len(data))
        self.gw.metrics.dropped("bad_control")
        return None

    # -- from the AI server --------------------------------------------------

    def on_message(self, msg: pb.ServerMessage) -> None:
        if self.state in ("ended", "failed"):
            return
        self.gw.wake(self)
        try:
            self._handle(msg)
        except ProtocolError as e:
            self.gw.metrics.stream_error("PROTOCOL")
            self.fail(f"AI server broke the protocol: {e}", pb.StreamEnd(
                reason=pb.StreamEnd.REASON_ERROR, detail=f"protocol error: {e}"))

    def _handle(self, msg: pb.ServerMessage) -> None:
        kind = msg.WhichOneof("msg")
        if kind == "audio":
            a = msg.audio
            if a.sample_rate not in AI_RATES:
                raise ProtocolError(f"audio sample_rate {a.sample_rate} not one of 8000/16000/24000/48000")
            if len(a.pcm) % 2 or len(a.pcm) > MAX_AUDIO_BYTES:
                raise ProtocolError(f"audio of {len(a.pcm)} bytes (odd, or over {MAX_AUDIO_BYTES})")
            self.frames_received += 1
            self.gw.metrics.frames_received.inc()
            self.gw.metrics.bytes_received.inc(len(a.pcm))
            self.playout.add_audio(a.pcm, a.sample_rate)
        elif kind == "mark":
            if not msg.mark.name or len(msg.mark.name) > MAX_NAME:
                raise ProtocolError("mark name empty or too long")
            self.playout.add_mark(msg.mark.name)
        elif kind == "clear":
            dropped_ms, cleared = self.playout.clear()
            for name in cleared:
                self.stream.send(pb.GatewayMessage(mark=pb.MarkReached(name=name, cleared=True)))
            self.stream.send(pb.GatewayMessage(cleared=pb.PlaybackCleared(dropped_ms=dropped_ms)))
        elif kind == "hangup":
            self.post(_ring.CTL_HANGUP, (msg.hangup.cause or "NORMAL_CLEARING").encode())
        elif kind == "transfer":
            t = msg.transfer
            words = [t.destination, t.dialplan, t.context]
            if not t.destination or any(" " in w for w in words):
                raise ProtocolError("transfer destination empty or with spaces")
            if t.context and not t.dialplan:
                words[1] = "XML"
            self.post(_ring.CTL_TRANSFER, " ".join(w for w in words if w).encode())
        elif kind == "event":
            try:   # NaN and infinities have no JSON: the module could not parse them
                data = json_format.MessageToDict(msg.event.data)
                body = json.dumps({"name": msg.event.name, "data": data}, allow_nan=False).encode()
            except (ValueError, RecursionError) as e:
                raise ProtocolError(f"event data is not JSON: {e}") from None
            if len(body) > _ring.CTL_MSG_MAX:
                raise ProtocolError(f"event of {len(body)} bytes, over {_ring.CTL_MSG_MAX}")
            self.post(_ring.CTL_EVENT, body)
        else:
            self.log.debug("ignoring a server message this gateway does not know")

    # -- every tick ------------------------------------------------------------

    def tick(self, now_ns: int) -> bool:
        """Pace TTS, report marks, retry when due. Returns whether the call
        needs the next tick too."""
        for name in self.playout.tick(now_ns):
            if self.stream is not None:
                self.stream.send(pb.GatewayMessage(mark=pb.MarkReached(name=name)))
            self.post(_ring.CTL_MARK, name.encode())
        if self.state == "retrying" and time.monotonic() >= self._retry_at:
            self.connect()
        return self.playout.busy or self.state == "retrying"
