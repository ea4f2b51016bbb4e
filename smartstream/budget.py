"""Rates an AI server may not exceed: token buckets, refilled as time passes."""
from __future__ import annotations

import time


class TokenBucket:
    """rate per second on average, up to burst at once."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self, n: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


class StreamBudget:
    """Messages and bytes per second one stream may receive (Config.stream_max_*)."""

    def __init__(self, messages_per_s: float, bytes_per_s: float, burst_s: float):
        self.messages = TokenBucket(messages_per_s, messages_per_s * burst_s)
        self.bytes = TokenBucket(bytes_per_s, bytes_per_s * burst_s)

    def over(self, nbytes: int) -> str | None:
        """Why this message is over budget, or None."""
        if not self.messages.take():
            return f"over {self.messages.rate:g} messages/s"
        if not self.bytes.take(nbytes):
            return f"over {self.bytes.rate:g} bytes/s"
        return None
