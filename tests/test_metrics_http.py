"""The admin endpoint end to end: media simulator -> daemon -> real AI server,
with /metrics scraped over HTTP and parsed by prometheus_client's parser."""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from smartstream._router import SAMPLE_EVERY

from smartstream.v1 import smartstream_pb2 as pb

from .daemon_kit import scrape, start_daemon, until
from .harness import Sim

CALLS = 3

pytestmark = pytest.mark.usefixtures("mediasim")


async def wait_for_metric(admin: str, name: str, value: float) -> dict:
    """The scrape in which the metric has that value."""
    seen = {}

    async def reached():
        seen.update(await scrape(admin))
        return seen.get(name) == value
    await until(reached, f"{name} == {value}")
    return seen


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


async def test_metrics_count_what_the_ai_server_received(pool, tmp_path, server):
    daemon, admin = start_daemon(pool, tmp_path)
    try:
        sim = await Sim(pool, "--calls", str(CALLS), "--seconds", "3", "--tracks", "both",
                        "--target", f"127.0.0.1:{server.port}", "--uuid-prefix", "m").start()
        live = await wait_for_metric(admin, "smartstream_active_streams", CALLS)
        assert live["process_resident_memory_bytes"] > 0
        assert "process_cpu_seconds_total" in live
        summary = await sim.wait()
        recs = [rec for recs in server.streams.values() for rec in recs]
        assert len(recs) == CALLS
        for rec in recs:
            await asyncio.wait_for(rec.done.wait(), 10)
        received = sum(len(rec.frames(t)) for rec in recs
                       for t in (pb.TRACK_INBOUND, pb.TRACK_OUTBOUND))
        done = await wait_for_metric(admin, "smartstream_active_streams", 0)
        assert done["smartstream_frames_sent_total"] == received == summary["frames_written"]
        # One frame in SAMPLE_EVERY is timed: per-frame observation would cost more than the frame.
        assert done["smartstream_hook_to_send_seconds_count"] == received // SAMPLE_EVERY
        assert daemon.proc.poll() is None
    finally:
        daemon.cleanup()


async def test_status_health_and_unknown_paths(pool, tmp_path):
    daemon, admin = start_daemon(pool, tmp_path)
    try:
        status, ctype, body = await asyncio.to_thread(http_get, f"http://{admin}/status")
        doc = json.loads(body)
        assert (status, ctype) == (200, "application/json")
        assert doc["pool"] == {"path": pool, "slots": 16} and doc["streams"] == []
        assert doc["daemon_epoch"] > 0 and doc["log_level"] == "DEBUG"
        status, _, body = await asyncio.to_thread(http_get, f"http://{admin}/health")
        assert status == 200 and json.loads(body)["ok"] is True
        status, _, _ = await asyncio.to_thread(http_get, f"http://{admin}/nope")
        assert status == 404
        status, ctype, _ = await asyncio.to_thread(http_get, f"http://{admin}/metrics?x=1")
        assert status == 200 and ctype.startswith("text/plain; version=")
    finally:
        daemon.cleanup()
