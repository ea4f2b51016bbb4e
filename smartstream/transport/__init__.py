"""The one small interface between a call and the wire.

A Call asks its Transport for a Stream to a target, queues messages on it
during a tick, and hears back through its StreamHandler. The Gateway calls
Transport.flush() once at the end of every tick: a batching transport writes
there, one socket write per connection.
"""
from __future__ import annotations

import abc
import dataclasses
import logging
from typing import Protocol

from ..config import Config, TargetSettings
from ..target import Target, next_address
from ..v1 import smartstream_pb2 as pb

log = logging.getLogger("smartstream.transport")


class StreamHandler(Protocol):
    def on_message(self, msg: pb.ServerMessage) -> None:
        """A message from the AI server, in order."""

    def on_audio(self, pcm: memoryview, sample_rate: int, size: int) -> None:
        """ServerMessage{audio} of size bytes, in the same order, not decoded
        by protobuf (_tts_wire): pcm is valid only during the call."""

    def on_reached(self) -> None:
        """The stream's connection is up (called once, unless Stream.reached
        was already true when open_stream returned): what is sent from now on
        reaches the server."""

    def on_closed(self, code: str, detail: str) -> None:
        """The stream is over: code is the gRPC status name ("OK" when the
        server finished it), or "GOAWAY" when the transport ended it because
        the server is going away; detail says why."""


class Stream(abc.ABC):
    reached: bool   # its connection is up (else StreamHandler.on_reached comes later)

    @abc.abstractmethod
    def route(self, router, slot: int, uplink) -> None:
        """Point the Router's per-frame path for this slot at this stream."""

    @abc.abstractmethod
    def send(self, msg: pb.GatewayMessage) -> None:
        """Queue a message; messages leave in the order queued."""

    @abc.abstractmethod
    def send_audio(self, track: int, seq: int, capture_ns: int, pcm: bytes,
                   synthesized: bool = False) -> None:
        """Queue one AudioFrame (the per-frame path: no message object needed)."""

    @abc.abstractmethod
    def finish(self) -> None:
        """Half-close once everything queued is sent."""

    @abc.abstractmethod
    def cancel(self, detail: str) -> None:
        """Abort now; nothing more is sent or delivered."""

    @abc.abstractmethod
    def retire(self, last: pb.GatewayMessage, grace_s: float) -> None:
        """Send last, half-close, and cancel after grace_s; from now on the
        handler hears nothing of this stream (its call may open another)."""


class Transport(abc.ABC):
    config: Config
    # The Router writes its frames to the wire itself (Router.pump): the
    # gateway may send between ticks.
    sub_ticks = False

    def settings(self, target: Target, tls: bool) -> TargetSettings:
        """The target's settings; a call that asked for TLS gets it either way."""
        ts = self.config.target_settings(target.authority)
        if target.authority not in self.config.targets:
            _warn_other_spelling(self.config, target)
        return dataclasses.replace(ts, tls=True) if tls and not ts.tls else ts

    def address(self, target: Target, tls: bool) -> tuple[Target, TargetSettings]:
        """Where a new stream goes and with which settings: dns:/ipv4:/ipv6:
        names give the next address, round-robin (connections are per address)."""
        ts = self.settings(target, tls)
        addr = next_address(target)
        if target.scheme == "dns" and ts.tls and not ts.server_name:
            ts = dataclasses.replace(ts, server_name=target.host)   # check the name, not the IP
        return addr, ts

    @abc.abstractmethod
    def open_stream(self, target: Target, handler: StreamHandler, tls: bool = False) -> Stream:
        """tls: the call asked for TLS (uuid_ai_stream ... tls=true), whatever
        the target's settings say."""

    def flush(self) -> None:
        """End of a tick."""

    @abc.abstractmethod
    async def close(self) -> None: ...


LOOPBACK = ("127.0.0.1", "localhost", "::1")
_warned: set[str] = set()


def _warn_other_spelling(config: Config, target: Target) -> None:
    """127.0.0.1:port silently misses a table written for localhost:port."""
    if target.host not in LOOPBACK or target.authority in _warned:
        return
    for host in LOOPBACK:
        other = Target(host, target.port).authority
        if other != target.authority and config.targets.get(other, TargetSettings()).tls:
            _warned.add(target.authority)
            log.warning('no [targets."%s"] table: this stream goes without TLS or token, though '
                        '[targets."%s"] (the same port, spelled differently) has tls', target, other)
            return


def make_transport(config: Config) -> Transport:
    if config.transport == "fast":
        from .fast import FastTransport
        return FastTransport(config)
    if config.transport == "grpcio":
        from .grpcio import GrpcioTransport
        return GrpcioTransport(config)
    raise ValueError(f"transport {config.transport!r}: expected 'fast' or 'grpcio'")
