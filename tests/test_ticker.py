"""The gateway's ticker (Gateway.start: a chain of loop timers): a tick every
cadence, sub-ticks between ticks only while there are calls, at most
cadence / drain_period - 1 of them per tick; a tick or sub-tick that raises
is logged and the ticker goes on; a late tick skips ahead instead of
bursting; stop() ends it. Over a real pool with a real call in it (the module
side through ModuleStream); the call's AI server is a real grpc.aio server."""
from __future__ import annotations

import asyncio
import logging
import time

from smartstream import _ring
from smartstream.config import Config
from smartstream.gateway import Gateway

from .aiserver import AIServer

RATE = 8000


class Recorder:
    """Wraps the gateway's tick and sub_tick: when each ran, and a way to make
    one of them raise or block."""

    def __init__(self, gw: Gateway):
        self.ticks: list[float] = []
        self.subs: list[float] = []
        self.raise_tick_at = self.raise_sub_at = self.block_tick_at = -1
        tick, sub_tick = gw.tick, gw.sub_tick

        def timed_tick():
            self.ticks.append(time.monotonic())
            if len(self.ticks) == self.raise_tick_at:
                raise RuntimeError("tick breaks once")
            if len(self.ticks) == self.block_tick_at:
                time.sleep(0.07)   # blocks the loop for three and a half cadences
            tick()

        def timed_sub_tick():
            self.subs.append(time.monotonic())
            if len(self.subs) == self.raise_sub_at:
                raise RuntimeError("sub-tick breaks once")
            sub_tick()

        gw.tick, gw.sub_tick = timed_tick, timed_sub_tick

    def subs_between_ticks(self) -> list[int]:
        return [sum(a < s < b for s in self.subs) for a, b in zip(self.ticks, self.ticks[1:])]


async def wait_for(predicate, what: str, seconds: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.005)


async def started(pool, **settings) -> tuple[Gateway, Recorder]:
    gw = Gateway(Config(pool_path=pool, pool_slots=4, **settings))
    rec = Recorder(gw)
    gw.start()
    return gw, rec


async def test_ticks_alone_without_calls_then_sub_ticks_between_them(pool):
    server = AIServer()
    port = await server.start()
    gw, rec = await started(pool, cadence_ms=20, drain_period_ms=5)
    try:
        await wait_for(lambda: len(rec.ticks) >= 10, "ten ticks")
        assert rec.subs == []   # no call: nothing to send between ticks
        module = _ring.ModuleStream(_ring.Pool.attach(pool), "ticker", f"127.0.0.1:{port}", RATE)
        await wait_for(lambda: module.slot in gw.calls, "the call opened")
        first = len(rec.ticks)
        await wait_for(lambda: len(rec.ticks) >= first + 10, "ten more ticks")
        between = rec.subs_between_ticks()[first:]
        # Sub-ticks at 5, 10 and 15 ms after each tick; none just before the
        # next (17.5 ms on): at most three, and a late one is skipped.
        assert max(between) <= 3
        assert sum(between) >= 5
        module.close()
        await wait_for(lambda: not gw.calls, "the call closed")
        quiet = len(rec.subs)
        last = len(rec.ticks)
        await wait_for(lambda: len(rec.ticks) >= last + 5, "five ticks after the call")
        assert len(rec.subs) == quiet
    finally:
        await gw.stop()
        await server.stop(0)


async def test_grpcio_transport_has_no_sub_ticks(pool):
    gw, rec = await started(pool, transport="grpcio", drain_period_ms=5)
    try:
        module = _ring.ModuleStream(_ring.Pool.attach(pool), "ticker", "127.0.0.1:9", RATE)
        await wait_for(lambda: module.slot in gw.calls, "the call opened")
        first = len(rec.ticks)
        await wait_for(lambda: len(rec.ticks) >= first + 5, "five ticks with a call")
        assert rec.subs == []
        module.close()
    finally:
        await gw.stop()


async def test_a_failing_tick_or_sub_tick_does_not_stop_the_ticker(pool, caplog):
    gw, rec = await started(pool, drain_period_ms=5)
    rec.raise_tick_at, rec.raise_sub_at = 3, 2
    try:
        module = _ring.ModuleStream(_ring.Pool.attach(pool), "ticker", "127.0.0.1:9", RATE)
        with caplog.at_level(logging.ERROR, logger="smartstream.gateway"):
            await wait_for(lambda: len(rec.ticks) >= 8 and len(rec.subs) >= 4,
                           "ticks and sub-ticks after the failures")
        messages = [r.getMessage() for r in caplog.records]
        assert "tick failed" in messages and "sub-tick failed" in messages
        module.close()
    finally:
        await gw.stop()


async def test_a_late_tick_skips_ahead_and_stop_ends_the_ticker(pool):
    gw, rec = await started(pool, cadence_ms=20)
    rec.block_tick_at = 3
    try:
        await wait_for(lambda: len(rec.ticks) >= 7, "ticks after the blocked one")
        # The blocked tick came back 70 ms late: the next is a cadence after
        # that, not three missed ticks at once.
        gaps = [b - a for a, b in zip(rec.ticks[3:], rec.ticks[4:7])]
        assert min(gaps) >= 0.015, gaps
        late = gw.metrics.registry.get_sample_value(
            "smartstream_tick_lateness_seconds_bucket", {"le": "0.03"})
        count = gw.metrics.registry.get_sample_value("smartstream_tick_lateness_seconds_count")
        assert count > late   # the tick after the blocked one was observed late
    finally:
        await gw.stop()
    stopped = len(rec.ticks)
    await asyncio.sleep(0.1)
    assert len(rec.ticks) == stopped   # stop()'s own last tick came before it returned
