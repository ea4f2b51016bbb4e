"""Daemon settings with their defaults. Every default works on loopback as is."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TargetSettings:
    """How to reach one AI server (a key of Config.targets: "host:port")."""
    tls: bool = False
    ca_file: str | None = None          # None: the system roots
    cert_file: str | None = None        # client certificate for mTLS
    key_file: str | None = None
    server_name: str | None = None      # TLS name override
    # sent as "authorization: Bearer <token>"; never logged (repr=False keeps it out of reprs)
    token: str | None = field(default=None, repr=False)
    # What this server may make FreeSWITCH do (smartstream/actions.py):
    # hangup, event, transfer, send_dtmf; a transfer only to these
    # "dialplan:context" pairs ("XML:" = the channel's own context).
    allow_actions: tuple = ("hangup", "event")   # by default no new destination, no DTMF
    transfer_allow: tuple = ()


@dataclass
class Config:
    pool_path: str = "/run/smartstream/smartstream.pool"   # a directory only we and FreeSWITCH reach
    pool_slots: int = 256
    pool_mode: int = 0o660              # owner and group bits only: others get nothing
    pool_group: str = ""                # group of the pool file ("": the daemon's own)
    cadence_ms: float = 20.0            # one drain of every ring per tick
    drain_period_ms: float = 5.0        # audio frames sent between ticks this often (>= cadence_ms: once a tick)
    heartbeat_timeout_ms: int = 200     # the module says "daemon lost" after this long without a tick
    resume_bound_ms: int = 2000         # audio kept for a stream that is down
    prebuffer_ms: int = 60              # TTS kept in the downlink ring ahead of playout (it holds 0.5 s)
    max_tts_queue_ms: int = 120_000     # TTS queued per call beyond the ring
    retry_initial_ms: int = 100
    retry_max_ms: int = 5000            # capped by retry_limit_ms()
    retry_give_up_s: float = 0.0        # 0: retry for the whole call
    streams_per_channel: int = 100      # HTTP/2 concurrent streams per connection
    keepalive_ms: int = 20_000
    keepalive_timeout_ms: int = 10_000
    transport: str = "fast"               # fast (compiled HTTP/2) | grpcio (the reference)
    targets: dict[str, TargetSettings] = field(default_factory=dict)
    log_level: str = "INFO"
    log_format: str = "text"            # text | json
    admin_listen: str = "127.0.0.1:9464"    # /metrics /status /health: localhost unless configured
    admin_max_connections: int = 32     # served at once; more are closed at once
    admin_timeout_s: float = 5.0        # a connection's whole life, request to answer
    # Per stream, from the AI server: past either the stream ends
    # REASON_OVER_BUDGET and is resumed after backoff.
    stream_max_messages_per_s: int = 200   # an Ack every few hundred ms (the proto) is 10/s
    stream_max_bytes_per_s: int = 1 << 20
    stream_burst_s: float = 4.0         # either budget may be spent this many seconds at once
    event_socket_host: str = "127.0.0.1"    # FreeSWITCH's mod_event_socket, for smartstreamctl
    event_socket_port: int = 8021
    event_socket_password: str = field(default="ClueCon", repr=False)
    event_socket_timeout_s: float = 10.0   # smartstreamctl's deadline per exchange with it

    def retry_limit_ms(self) -> int:
        """The longest reconnect wait: retry_max_ms, but at most a quarter of
        the resume window, so a server back before the window starts losing
        frames is reached before it does."""
        if not self.resume_bound_ms:
            return self.retry_max_ms
        return max(self.retry_initial_ms, min(self.retry_max_ms, self.resume_bound_ms // 4))

    def target_settings(self, target: str) -> TargetSettings:
        return self.targets.get(target) or TargetSettings()
