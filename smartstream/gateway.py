"""The gateway: the pool, ONE ticker for every call, and the calls.

Every cadence_ms the ticker drains all watched rings with one _ring call,
hands each record to its Call, picks up calls that started or ended, tops up
TTS, and lets the transport flush. Every drain_period_ms in between, a
sub-tick (one Router.pump call) sends the audio frames that came since, so a
frame waits for the next sub-tick, not the next tick. Nothing here waits on
the network: the transport owns that.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import time

from . import _ring
from ._router import Router
from .call import Call
from .config import Config
from .logs import Throttle
from .metrics import Metrics
from .transport import Transport, make_transport
from .v1 import smartstream_pb2 as pb

log = logging.getLogger("smartstream.gateway")

COUNTER_EVERY = 50   # ticks between reads of a call's ring counters (1 s at 20 ms)
# Why the module closed a slot -> StreamEnd's reason and detail.
END_REASONS = {_ring.END_HANGUP: (pb.StreamEnd.REASON_HANGUP, "call hung up"),
               _ring.END_STOP: (pb.StreamEnd.REASON_STOPPED, "uuid_ai_stream stop"),
               _ring.END_UNLOAD: (pb.StreamEnd.REASON_STOPPED, "mod_ai_stream unloaded")}
RING_ERRORS = {_ring.E_CORRUPT: "ring_corrupt", _ring.E_STALE: "slot_reused", _ring.E_BUSY: "ring_busy"}


class Gateway:
    def __init__(self, config: Config, transport: Transport | None = None,
                 metrics: Metrics | None = None):
        self.config = config
        self.metrics = metrics or Metrics()
        self.pool = _ring.Pool.open(config.pool_path, config.pool_slots, config.pool_mode,
                                    config.heartbeat_timeout_ms)
        self.transport = transport or make_transport(config)
        self.router = Router(self.pool.slot_count)
        self.calls: dict[int, Call] = {}
        self._busy: set[Call] = set()   # calls with TTS to pace or a retry due: ticked
        self._batch = _ring.Batch()
        self._sub_batch = _ring.Batch()
        self._throttle = Throttle(log)
        self._stale = 0                 # router.stale already counted in the metrics
        self._timer: asyncio.TimerHandle | None = None   # the ticker's next wake-up
        self.ticks = 0
        log.info("pool %s %s: %d slots", config.pool_path,
                 "re-attached" if self.pool.reattached else "created", self.pool.slot_count)
        if self.pool.slot_count != config.pool_slots:   # live calls are in it: it is not resized
            log.warning("pool %s has %d slots, pool_slots is %d: the pool's %d win until it "
                        "is removed with no call on it", config.pool_path, self.pool.slot_count,
                        config.pool_slots, self.pool.slot_count)
        self._check_room(config.pool_path)

    def _check_room(self, path: str) -> None:
        """Calls' rings are allocated as they start: say now if the pool's
        filesystem cannot hold a full pool of the smallest calls."""
        vfs = os.statvfs(path)
        free = vfs.f_bavail * vfs.f_frsize
        per_call = _ring.call_bytes(8000, _ring.TRACKS_IN)
        if free < self.pool.slot_count * per_call:
            log.warning("pool %s: its filesystem has %d MiB free, room for %d of the %d slots' "
                        "calls at 8 kHz inbound (%d KiB each; more for wideband or both tracks): "
                        "further calls will fail to start until it is bigger", path, free >> 20,
                        free // per_call, self.pool.slot_count, per_call >> 10)

    # -- running ---------------------------------------------------------------

    def start(self) -> None:
        try:
            self.tick()   # pick up live slots at once: a restarted daemon resumes them now
        except Exception:   # the ticker retries every cadence; the daemon must start
            log.exception("first tick failed")
        # What start-up made (modules, descriptors, settings) lives as long as
        # the daemon: out of the collector's sight, a full collection at
        # thousands of calls walks only the calls.
        gc.freeze()
        self._loop = asyncio.get_running_loop()
        cadence = self._cadence = self.config.cadence_ms / 1000
        # Sub-ticks only where the Router sends by itself (FAST routes); the
        # grpcio transport sends every frame from Python, once a tick.
        self._period = min(self.config.drain_period_ms / 1000 if self.transport.sub_ticks
                           else cadence, cadence)
        self._due = time.monotonic() + cadence
        self._sub = self._due - cadence + self._period
        self._arm()

    # The ticker is a chain of loop timers, not a task sleeping in a loop: a
    # wake-up then costs one timer callback, no future, task step or
    # coroutine resume (25-35 us less a wake-up on the 2-core test VM).
    def _arm(self) -> None:
        """Schedule the next sub-tick (there are calls and one fits before the
        tick, not just before it) or else the tick."""
        now = time.monotonic()
        if self.calls and self._sub < self._due - self._period / 2:
            self._timer = self._loop.call_later(max(0.0, self._sub - now), self._on_sub_tick)
        else:
            self._timer = self._loop.call_later(max(0.0, self._due - now), self._on_tick)

    def _on_sub_tick(self) -> None:
        try:
            self.sub_tick()
        except Exception:   # up to hundreds a second: throttled
            self._throttle.log(logging.ERROR, "sub-tick", "sub-tick failed", exc_info=True)
        finally:
            self._sub = max(self._sub, time.monotonic()) + self._period   # late: skip, do not burst
            self._arm()

    def _on_tick(self) -> None:
        cadence = self._cadence
        late = time.monotonic() - self._due
        try:
            self.metrics.tick_lateness.observe(max(late, 0.0))
            self.tick()
        except Exception:
            log.exception("tick failed")   # one bad tick must not stop the gateway
        finally:
            self._due += cadence
            if late > cadence:   # fell behind: skip, do not burst
                self._due = time.monotonic() + cadence
            self._sub = self._due - cadence + self._period
            self._arm()

    async def stop(self) -> None:
        """End every stream with StreamEnd (the calls go on; a new daemon resumes them)."""
        if self._timer is not None:
            self._timer.cancel()
        self.tick()   # last frames out first
        self.pool.leave()   # no more ticks: "stopped" now, not "lost" if closing takes a while
        for call in list(self.calls.values()):
            call.end(pb.StreamEnd.REASON_SHUTDOWN, "gateway shutting down")
        self.transport.flush()
        await asyncio.sleep(0.05)
        await self.transport.close()
        self.pool.close()

    def wake(self, call: Call) -> None:
        """The call has something to do on the next ticks."""
        self._busy.add(call)

    def status(self) -> list[dict]:
        """One row per live stream, for `smartstreamctl status`."""
        rows = []
        for call in self.calls.values():
            c = self.pool.counters(call.slot)
            rows.append(dict(
                uuid=call.uuid, slot=call.slot, target=call.info["target"], state=call.state,
                frames_out=self.router.frames_sent(call.slot), frames_in=call.audio_messages_received,
                dropped=c["up_in_dropped"] + c["up_out_dropped"] + call.uplink.dropped,
                reconnects=call.reconnects, rate=call.out_rate,
                tts_queued_ms=call.playout.queued_bytes * 1000 // (2 * call.playout.rate)))
        return rows

    # -- one tick ----------------------------------------------------------------

    def tick(self) -> None:
        pool = self.pool
        pool.heartbeat()
        now = time.monotonic_ns()
        changes = pool.scan()
        # One slot's failure (a bug, input no one foresaw) costs that call, never
        # the tick: every other slot's open, close and tick still happen.
        for slot, gen, state in changes:
            if state in (_ring.SLOT_ACTIVE, _ring.SLOT_CLOSING) and slot not in self.calls:
                self._guarded(self._open_call, slot, slot, gen)
        self._drain(now)
        for slot, gen, state in changes:
            call = self.calls.get(slot)
            if call is None:
                continue
            if call.gen != gen or state == _ring.SLOT_FREE:
                self._guarded(self._close_call, slot, call, pb.StreamEnd.REASON_ERROR,
                              "slot taken by another call")
            elif state == _ring.SLOT_CLOSING:
                self._guarded(self._close_call, slot, call, *self._end_reason(call.slot))
        for call in list(self._busy):
            if not self._guarded(call.tick, call.slot, now) or call.slot not in self.calls:
                self._busy.discard(call)
        self.transport.flush()
        self.ticks += 1
        # A slice of the slots a tick: each call once every COUNTER_EVERY ticks,
        # and no tick pays for all of them (milliseconds at 1000 calls).
        for slot in range(self.ticks % COUNTER_EVERY, pool.slot_count, COUNTER_EVERY):
            if (call := self.calls.get(slot)) is not None:
                self._collect_ring_counters(call)

    def sub_tick(self) -> None:
        """Between ticks: send the audio frames that came since, and nothing else."""
        self.router.pump(self.pool, self._sub_batch)
        if self._sub_batch.errors:
            self._ring_errors(self._sub_batch)

    def _guarded(self, fn, slot: int, *args):
        """fn(*args), or None (logged and counted) if it raised."""
        try:
            return fn(*args)
        except Exception:
            call = self.calls.get(slot)
            (call.log if call else log).exception("slot %d: %s failed", slot, fn.__name__)
            self.metrics.dropped("slot_error")
            return None

    def _drain(self, now: int) -> None:
        batch = self._batch
        self.pool.drain(batch)   # even empty, deliver() hands over what the sub-ticks sent
        frames, nbytes, py_frames, controls, latency = self.router.deliver(batch, now)
        calls = self.calls
        for slot, msg in py_frames:
            calls[slot].send_routed(msg)
        for slot, type_, data in controls:
            try:
                calls[slot].on_control(type_, data)
            except Exception:   # one call's bad message must not cost the others their tick
                calls[slot].log.exception("control message %d from the module failed", type_)
                self.metrics.dropped("bad_control")
        m = self.metrics
        m.frames_sent.inc(frames)
        m.bytes_sent.inc(nbytes)
        for seconds in latency:
            m.hook_to_send.observe(seconds)
        if self.router.stale != self._stale:   # a ring handed back a sequence already taken
            m.dropped("stale_sequence", self.router.stale - self._stale)
            self._stale = self.router.stale
        self._ring_errors(batch)

    def _collect_ring_counters(self, call: Call) -> None:
        """Fold what the module counted in the call's shared memory into the metrics."""
        c = self.pool.counters(call.slot)
        over, under = c["up_in_dropped"] + c["up_out_dropped"], c["down_underruns"]
        self.metrics.ring_overruns.inc(over - call.seen_overruns)
        self.metrics.ring_underruns.inc(under - call.seen_underruns)
        call.seen_overruns, call.seen_underruns = over, under

    def _ring_errors(self, batch) -> None:
        for slot, code, lost in batch.errors:
            reason = RING_ERRORS.get(code, "ring_error")
            self.metrics.dropped(reason)
            call = self.calls.get(slot)
            (call.log if call else log).error("slot %d: %s (%d bytes lost)", slot, reason, lost)

    def _open_call(self, slot: int, gen: int) -> None:
        try:
            info = self.pool.slot_info(slot)
        except _ring.SlotError as e:
            log.error("ignoring slot %d: %s", slot, e)
            self.metrics.dropped("bad_slot")
            return
        if info["generation"] != gen:
            return   # changed again since the scan; the next scan has it
        resumed = self.pool.watch(slot, gen)
        self.pool.hold(slot, True)   # until its first stream is up (Call.on_reached)
        call = Call(self, info, resumed)
        self.calls[slot] = call
        self.router.route(slot, call.uplink)   # the window holds frames until the stream is up
        self.metrics.active_streams.inc()
        try:
            call.connect()
        except Exception:   # the call is known: it is closed when its slot is
            call.fail("opening the stream failed (logged)")
            raise

    def _end_reason(self, slot: int) -> tuple[int, str]:
        code = self.pool.end_reason(slot)
        if code not in END_REASONS:   # a newer or broken module: still a hang-up
            return pb.StreamEnd.REASON_HANGUP, f"unknown end reason {code} from the module"
        return END_REASONS[code]

    def _close_call(self, call: Call, reason: int, detail: str) -> None:
        try:
            call.end(reason, detail)
        finally:   # the slot is let go whatever ending the stream met
            self._forget_call(call)

    def _forget_call(self, call: Call) -> None:
        self._collect_ring_counters(call)
        self.metrics.dropped("resume_overflow", call.uplink.dropped)
        self.metrics.active_streams.dec()
        del self.calls[call.slot]
        self._busy.discard(call)
        try:
            self.pool.free_slot(call.slot, call.gen)
        except _ring.SlotError:
            self.pool.unwatch(call.slot)   # already taken by a new call
        call.log.info("stream ended: %d frames sent, %d audio messages received, %d dropped",
                      call.frames_sent, call.audio_messages_received, call.uplink.dropped)
