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

from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError

from . import _ring
from .actions import ActionPolicy
from .bounded_json import loads_object
from .budget import StreamBudget
from .logs import Throttle, peer_text
from .playback import Playback
from .playout import Playout
from .target import TargetError, parse_target
from ._uplink import Uplink, gap_message
from .v1 import smartstream_pb2 as pb

log = logging.getLogger("smartstream.call")

# The server is gone or overloaded: worth another try. Anything else (it
# rejected us, it does not implement the service) would fail again the same way.
RETRYABLE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL",
             "UNKNOWN", "CANCELLED"}
# The server ended the stream cleanly (OK) or its connection (GOAWAY) while the
# call goes on: it is draining (a rolling restart). Resume at once elsewhere.
DRAINS = {"OK", "GOAWAY"}
AI_RATES = {8000, 16000, 24000, 48000}
MAX_AUDIO_BYTES = 1 << 20          # one Audio message: ~11 s at 48 kHz
MAX_NAME = 256
METADATA_DEPTH, METADATA_BYTES = 32, 4096   # the proto's bound; the slot's field (SS_META_MAX)
PENDING_CONTROL_MAX = 256          # control messages kept while the stream is down
END_GRACE_S = 1.0                  # a server told StreamEnd gets this long to finish the RPC
ACTION_CONTROL = {"hangup": _ring.CTL_HANGUP, "transfer": _ring.CTL_TRANSFER, "event": _ring.CTL_EVENT,
                  "send_dtmf": _ring.CTL_SEND_DTMF}
TRACK_PB = {_ring.TRACK_IN: pb.TRACK_INBOUND, _ring.TRACK_OUT: pb.TRACK_OUTBOUND}
PB_TRACK = {v: k for k, v in TRACK_PB.items()}


class ProtocolError(Exception):
    """The AI server sent something the contract does not allow."""


class Call:
    def __init__(self, gateway, info: dict, resumed: bool):
        self.gw = gateway
        cfg = gateway.config
        self.slot, self.gen, self.uuid = info["slot"], info["generation"], info["uuid"]
        self.info = info
        self.log = logging.LoggerAdapter(log, {"uuid": self.uuid})
        self.throttle = Throttle(self.log)   # lines the AI server can cause at will
        self.tracks = [t for t in (_ring.TRACK_IN, _ring.TRACK_OUT) if info["tracks"] & (1 << t)]
        self.out_rate = info["requested_rate"] or info["channel_rate"]
        self.uplink = Uplink(info["channel_rate"], self.out_rate, self.tracks, cfg.resume_bound_ms)
        self.uplink.bind(gateway.pool, self.slot, resumed)   # where a previous daemon stopped sending
        self.playout = Playout(gateway.pool, self.slot, self.gen, info["channel_rate"],
                               cfg.prebuffer_ms, cfg.max_tts_queue_ms, gateway.metrics.ai_to_playout)
        self.playback = Playback(self, self.playout)
        self.resumed = resumed
        self.state = "connecting"
        self.stream = None
        self.router = gateway.router
        self._pending_control: list[pb.GatewayMessage] = []
        self._retry_at = 0
        self._retry_ms = cfg.retry_initial_ms
        self._down_since = None        # when the outage began (None: no stream has broken)
        self._opened_at = 0.0
        self.audio_messages_received = 0
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
        cfg = self.gw.config
        ts = cfg.target_settings(target.authority)
        self.policy = ActionPolicy(ts.allow_actions, ts.transfer_allow)   # this stream's grant
        self.budget = StreamBudget(cfg.stream_max_messages_per_s, cfg.stream_max_bytes_per_s,
                                   cfg.stream_burst_s)
        self.gw.pool.set_link(self.slot, self.gen, _ring.LINK_CONNECTING)
        self.stream = self.gw.transport.open_stream(
            target, self, tls=bool(self.info["flags"] & _ring.SLOT_F_TLS))
        self.state = "connecting"
        self.log.info("opening %s stream to %s", "resumed" if self.resumed else "new", target)
        if self.stream.reached:
            self.on_reached()

    def on_reached(self) -> None:
        """The stream's connection is up: what we send now reaches the server,
        so only now does the window count it as sent."""
        if self.state != "connecting" or self.stream is None:
            return
        items, first = self.uplink.resume()
        self.stream.send(pb.GatewayMessage(start=self._start_message(first)))
        m, now = self.gw.metrics, time.monotonic_ns()
        for kind, track, a, b, c in items:
            if kind == "gap":
                self.stream.send(gap_message(track, a, b, c))
            else:
                self.stream.send_audio(TRACK_PB[track], a, b, c, kind == "silence")
                m.frames_sent.inc()
                m.bytes_sent.inc(len(c))
                if (seconds := self.router.sampled(b, now)) is not None:
                    m.hook_to_send.observe(seconds)
        m.frames_replayed.inc(self.uplink.stream_replayed)
        for msg in self._pending_control:
            self.stream.send(msg)
        self._pending_control.clear()
        self.stream.route(self.router, self.slot, self.uplink)
        self.gw.pool.hold(self.slot, False)   # the ring's backlog goes out from now on
        self.state = "streaming"
        self._opened_at = time.monotonic()
        self.gw.pool.set_link(self.slot, self.gen, _ring.LINK_STREAMING)

    def _start_message(self, first: list[int]) -> pb.StreamStart:
        info = self.info
        start = pb.StreamStart(
            call_uuid=self.uuid, caller=info["caller"], callee=info["callee"],
            codec=info["codec"], channel_sample_rate=info["channel_rate"],
            sample_rate=self.out_rate, tracks=[TRACK_PB[t] for t in self.tracks],
            resumed=self.resumed, next_sequence=first[_ring.TRACK_IN],
            next_sequence_outbound=first[_ring.TRACK_OUT])
        start.allowed_actions.extend(self.policy.allowed)
        if info["metadata"]:
            try:   # OverflowError: an integer no double holds
                start.metadata.update(loads_object(info["metadata"], METADATA_DEPTH, METADATA_BYTES))
            except (ValueError, OverflowError) as e:
                self.log.warning("start metadata not sent: %s", str(e)[:200])
                self.gw.metrics.dropped("bad_metadata")
        return start

    def on_closed(self, code: str, detail: str) -> None:
        """The transport says the stream is over."""
        if self.state in ("ended", "failed"):
            return
        self.stream = None
        self.router.route(self.slot, self.uplink)   # frames wait in the window
        lived = time.monotonic() - self._opened_at if self.state == "streaming" else 0.0
        if (code in RETRYABLE or code in DRAINS) and self._may_retry():
            self.state = "retrying"
            self.resumed = True
            now = time.monotonic()
            if self._down_since is None or lived > self.gw.config.retry_limit_ms() / 1000:
                self._down_since = now   # that stream worked: a new outage
                self._retry_ms = self.gw.config.retry_initial_ms
            # A drain moves on at once, unless that stream drained as soon as it opened.
            drained = code in DRAINS and lived > self.gw.config.retry_initial_ms / 1000
            self._retry_at = now + (0 if drained else self._retry_delay())
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

    def _retry_delay(self) -> float:
        """Backoff, doubling up to Config.retry_limit_ms: a quarter of the
        resume window at most, so a server back before the window loses frames
        is reached before it does."""
        delay = self._retry_ms * random.uniform(0.8, 1.0) / 1000
        self._retry_ms = min(self._retry_ms * 2, self.gw.config.retry_limit_ms())
        return delay

    def _may_retry(self) -> bool:
        give_up = self.gw.config.retry_give_up_s
        return not give_up or self._down_since is None or \
            time.monotonic() - self._down_since < give_up

    def end(self, reason: int, detail: str = "") -> None:
        """The call is over for us: StreamEnd last, then half-close."""
        if self.state in ("ended", "failed"):
            return
        if self.state == "streaming":
            self.stream.send(pb.GatewayMessage(end=self.stream_end(reason, detail)))
            self.stream.finish()
            self.stream = None
        elif self.state in ("connecting", "retrying"):
            if self.stream is not None:   # not connected yet: nothing was sent on it
                self.stream.cancel("call ended before the stream connected")
                self.stream = None
            self.log.warning("call ended while the stream was down: %d frames may not have "
                             "reached the AI server", self.uplink.held_frames())
        self.frames_sent = self.router.frames_sent(self.slot)
        self.router.unroute(self.slot)
        self.state = "ended"
        self.end_reason = reason

    def stream_end(self, reason: int, detail: str = "") -> pb.StreamEnd:
        """StreamEnd with this stream's totals."""
        up = self.uplink
        return pb.StreamEnd(reason=reason, detail=detail, frames_sent=up.stream_sent,
                            frames_lost=up.stream_lost, frames_replayed=up.stream_replayed)

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
        self.gw.pool.hold(self.slot, False)   # drained and counted as before, never sent
        self.gw.pool.set_link(self.slot, self.gen, _ring.LINK_FAILED)
        self.post(_ring.CTL_ERROR, reason.encode()[:_ring.CTL_MSG_MAX])

    def refuse(self, kind: str, code: int, detail: str) -> None:
        """A server message the stream goes on without (proto: Refused)."""
        self.gw.metrics.refused.labels(kind, pb.Refused.Code.Name(code)).inc()
        self.throttle.log(logging.WARNING, "refused " + kind, "refused %s from the AI server: %s",
                          kind, peer_text(detail))
        if self.stream is not None:
            self.stream.send(pb.GatewayMessage(refused=pb.Refused(message=kind, code=code, detail=detail)))

    def post(self, type_: int, data: bytes) -> bool:
        """A control message to the module; a full ring is logged, not fatal.
        Returns whether it was posted."""
        try:
            self.gw.pool.post_control(self.slot, self.gen, type_, data)
            return True
        except _ring.RingError as e:
            self.throttle.log(logging.ERROR, "post", "control message %d to the module not "
                              "delivered: %s", type_, e)
            self.gw.metrics.dropped("control_to_module")
            return False

    # -- from the module, once per tick ------------------------------------

    def send_routed(self, msg: pb.GatewayMessage) -> None:
        """A frame or Gap the Router routed to Python (the grpcio transport)."""
        self.stream.send(msg)

    def on_control(self, type_: int, data: bytes) -> None:
        msg = self._control_message(type_, data)
        if msg is not None:
            self.tell(msg)

    def tell(self, msg: pb.GatewayMessage) -> None:
        """A message for the AI server: sent, or held while the stream is down."""
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
        self._receive(msg.ByteSize(), self._handle, msg)

    def on_audio(self, pcm: memoryview, sample_rate: int, size: int) -> None:
        self._receive(size, self._audio, pcm, sample_rate)

    def _receive(self, size: int, handle, *args) -> None:
        """One server message of size bytes, within the stream's budget."""
        if self.state in ("ended", "failed"):
            return
        self.gw.wake(self)
        over = self.budget.over(size)
        if over:
            self._over_budget(over)
            return
        try:
            handle(*args)
        except ProtocolError as e:
            self.gw.metrics.stream_error("PROTOCOL")
            self.fail(f"AI server broke the protocol: {e}",
                      self.stream_end(pb.StreamEnd.REASON_PROTOCOL, f"protocol error: {e}"))
        except _ring.SlotError as e:   # the call's slot went under us: the next scan ends it
            self.log.info("server message for a call already gone: %s", e)

    def _over_budget(self, why: str) -> None:
        """Proto: StreamEnd{REASON_OVER_BUDGET}, the RPC cancelled, retried and resumed."""
        self.gw.metrics.over_budget.inc()
        detail = f"AI server {why} on this stream"
        self.stream.retire(pb.GatewayMessage(end=self.stream_end(pb.StreamEnd.REASON_OVER_BUDGET,
                                                                 detail)), END_GRACE_S)
        self.on_closed("RESOURCE_EXHAUSTED", detail)

    def _handle(self, msg: pb.ServerMessage) -> None:
        kind = msg.WhichOneof("msg")
        if kind == "audio":
            self._audio(msg.audio.pcm, msg.audio.sample_rate)   # each read of pcm is a copy
        elif kind == "mark":
            if not msg.mark.name or len(msg.mark.name) > MAX_NAME:
                raise ProtocolError("mark name empty or too long")
            self.playback.mark(msg.mark.name)
        elif kind == "clear":
            self.playback.clear()
        elif kind in ("pause_playback", "continue_playback"):
            self.playback.pause(kind == "pause_playback")
        elif kind == "get_playback_status":
            self.playback.status(msg.get_playback_status.request_id)
        elif kind == "flow_control":
            self.playback.flow_control(msg.flow_control)
        elif kind in ACTION_CONTROL:   # capabilities the operator granted (actions.py)
            refusal, data = getattr(self.policy, kind)(getattr(msg, kind))
            if refusal:
                self.refuse(kind, *refusal)
            elif not self.post(ACTION_CONTROL[kind], data):   # told, never lost silently
                self.refuse(kind, pb.Refused.CODE_RATE_LIMITED, "FreeSWITCH's control ring is full")
            elif kind == "send_dtmf":
                self.tell(pb.GatewayMessage(dtmf_sent=pb.DtmfSent(digits=msg.send_dtmf.digits)))
        elif kind == "ack":
            track = PB_TRACK.get(msg.ack.track)
            if track not in self.tracks or not self.uplink.ack(track, msg.ack.sequence):
                raise ProtocolError(f"ack of track {msg.ack.track} sequence {msg.ack.sequence}, "
                                    "not yet sent")
        elif kind == "done":
            self.log.info("AI server is done with the call: %s", peer_text(msg.done.reason))
            self.end(pb.StreamEnd.REASON_SERVER_DONE, msg.done.reason)
        else:
            self.log.debug("ignoring a server message this gateway does not know")

    def _audio(self, pcm, sample_rate: int) -> None:
        if sample_rate not in AI_RATES:
            raise ProtocolError(f"audio sample_rate {sample_rate} not one of 8000/16000/24000/48000")
        if len(pcm) > MAX_AUDIO_BYTES:
            raise ProtocolError(f"audio of {len(pcm)} bytes, over {MAX_AUDIO_BYTES}")
        self.audio_messages_received += 1
        self.gw.metrics.audio_messages_received.inc()
        self.gw.metrics.bytes_received.inc(len(pcm))
        self.playback.audio(pcm, sample_rate)

    # -- every tick ------------------------------------------------------------

    def tick(self, now_ns: int) -> bool:
        """Pace TTS, report marks, retry when due. Returns whether the call
        needs the next tick too."""
        busy = self.playback.tick(now_ns)
        if self.state == "retrying" and time.monotonic() >= self._retry_at:
            self.connect()
        return busy or self.state == "retrying"
