"""The daemon's counters, in Prometheus' conventions (base units, _total)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.active_streams = Gauge("smartstream_active_streams", "Calls with a stream", registry=r)
        self.frames_sent = Counter("smartstream_frames_sent_total", "Audio frames sent to AI servers", registry=r)
        self.frames_replayed = Counter("smartstream_frames_replayed_total",
                                       "Audio frames sent again on a resumed stream (at least once)",
                                       registry=r)
        self.bytes_sent = Counter("smartstream_bytes_sent_total", "PCM bytes sent to AI servers", registry=r)
        self.audio_messages_received = Counter("smartstream_audio_messages_received_total",
                                               "Audio messages (any length) from AI servers", registry=r)
        self.bytes_received = Counter("smartstream_bytes_received_total", "PCM bytes from AI servers", registry=r)
        self.drops = Counter("smartstream_frames_dropped_total", "Frames or messages dropped, by reason",
                             ["reason"], registry=r)
        self.stream_errors = Counter("smartstream_stream_errors_total", "Streams broken, by gRPC status",
                                     ["code"], registry=r)
        self.refused = Counter("smartstream_server_messages_refused_total",
                               "AI server messages answered with Refused, by message and code",
                               ["message", "code"], registry=r)
        self.tts_dropped_seconds = Counter("smartstream_tts_dropped_seconds_total",
                                           "AI server audio dropped over max_tts_queue_ms "
                                           "(each drop told by PlaybackDropped)", registry=r)
        self.over_budget = Counter("smartstream_streams_over_budget_total",
                                   "Streams ended because the AI server sent more messages or bytes "
                                   "per second than stream_max_* allow", registry=r)
        self.reconnects = Counter("smartstream_reconnects_total", "Stream resumes, by the gRPC status that broke it",
                                  ["code"], registry=r)
        self.ring_overruns = Counter("smartstream_ring_overruns_total",
                                     "Frames the module dropped because an uplink ring was full", registry=r)
        self.ring_underruns = Counter("smartstream_ring_underruns_total",
                                      "TTS frames the module found short", registry=r)
        self.ai_to_playout = Histogram("smartstream_ai_to_playout_seconds",
                                       "AI server audio arriving to the module playing its last byte",
                                       buckets=LATENCY_BUCKETS + (2.0, 5.0, 10.0), registry=r)
        self.tick_lateness = Histogram("smartstream_tick_lateness_seconds", "How late a tick started",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.hook_to_send = Histogram("smartstream_hook_to_send_seconds",
                                      "Capture in FreeSWITCH to handing the frame to the transport",
                                      buckets=LATENCY_BUCKETS, registry=r)

    def dropped(self, reason: str, n: int = 1) -> None:
        self.drops.labels(reason).inc(n)

    def stream_error(self, code: str) -> None:
        self.stream_errors.labels(code).inc()


def quantile(hist: Histogram, q: float) -> float:
    """Upper bound of the bucket holding quantile q (what Prometheus'
    histogram_quantile would say, without interpolation); 0 with no data."""
    buckets = [(float(s.labels["le"]), s.value) for s in next(iter(hist.collect())).samples
               if s.name.endswith("_bucket")]
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return 0.0
