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


@dataclass
class Config:
    pool_path: str = "/dev/shm/smartstream.pool"
    pool_slots: int = 256
    pool_mode: int = 0o660
    pool_group: str = ""                # group of the pool file ("": the daemon's own)
    cadence_ms: float = 20.0            # one drain of every ring per tick
    resume_bound_ms: int = 2000         # audio kept for a stream that is down
    prebuffer_ms: int = 60              # TTS kept in the downlink ring ahead of playout
    max_tts_queue_ms: int = 120_000     # TTS queued per call beyond the ring
    retry_initial_ms: int = 100
    retry_max_ms: int = 5000
    retry_give_up_s: float = 0.0        # 0: retry for the whole call
    streams_per_channel: int = 100      # HTTP/2 concurrent streams per connection
    keepalive_ms: int = 20_000
    keepalive_timeout_ms: int = 10_000
    transport: str = "fast"               # fast (compiled HTTP/2) | grpcio (the reference)
    targets: dict[str, TargetSettings] = field(default_factory=dict)
    log_level: str = "INFO"
    log_format: str = "text"            # text | json
    admin_listen: str = "127.0.0.1:9464"    # /metrics /status /health: localhost unless configured
    event_socket_host: str = "127.0.0.1"    # FreeSWITCH's mod_event_socket, for smartstreamctl
    event_socket_port: int = 8021
    event_socket_password: str = field(default="ClueCon", repr=False)

    def target_settings(self, target: str) -> TargetSettings:
        return self.targets.get(target) or TargetSettings()
