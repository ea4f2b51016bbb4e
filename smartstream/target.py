"""AI server addresses as the module hands them over (the slot's target text,
at most 255 bytes), in gRPC's naming (github.com/grpc/grpc doc/naming.md):

- ``host:port``, ``[v6]:port``: one server, connected to as given (as always).
- ``dns:///name:port`` (or ``dns:name:port``): every address the name resolves
  to; new streams go round-robin across them. Resolved with getaddrinfo when a
  stream opens, cached for RESOLVE_TTL_S. The port defaults to 443.
- ``ipv4:a:port,b:port`` / ``ipv6:[a]:port,[b]:port``: an explicit list, round-robin.

Connections are per address; an open stream stays where it is. A stream that
resumes after a break is a new stream and takes the next address.
"""
from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass

# \Z, not $: "$" also matches before a trailing newline, which must not pass.
_HOSTNAME = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z")
DEFAULT_PORT = 443      # gRPC's default when a dns:/ipv4:/ipv6: name has no port
RESOLVE_TTL_S = 5.0     # how long a dns: resolution is reused
SCHEMES = ("dns", "ipv4", "ipv6")


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit()


class TargetError(ValueError):
    """The target string is not host:port (or a dns:/ipv4:/ipv6: name)."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    scheme: str = ""                          # "" (host:port as given), dns, ipv4, ipv6
    addresses: tuple["Target", ...] = ()      # ipv4:/ipv6: lists

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def authority(self) -> str:
        """The canonical text: host:port as today; for a dns:/ipv4:/ipv6: name the
        whole name, scheme included (the key of its [targets."..."] settings, and
        what smartstreamctl hands to the module)."""
        if self.scheme == "dns":
            return f"dns:///{self.hostport}"
        if self.scheme:
            return f"{self.scheme}:" + ",".join(a.hostport for a in self.addresses)
        return self.hostport

    @property
    def balanced(self) -> bool:
        """True when streams are spread over the addresses the target names."""
        return bool(self.scheme)

    def __str__(self) -> str:
        return self.authority


def parse_target(text: str) -> Target:
    """host:port, [v6]:port, dns:///host[:port], ipv4:/ipv6: lists. Raises
    TargetError saying what is wrong."""
    if not text or len(text) > 255:
        raise TargetError(f"target {text!r}: expected host:port")
    scheme, sep, rest = text.partition(":")
    if sep and scheme.lower() in SCHEMES and not is_number(rest):   # "dns:50051": a host
        return _parse_named(text, scheme.lower(), rest)
    if sep and scheme.lower() in ("unix", "unix-abstract", "vsock", "xds"):
        raise TargetError(f"target {text!r}: scheme {scheme}: not supported "
                          "(expected host:port, dns:///host:port, ipv4: or ipv6: lists)")
    return _parse_hostport(text, text)


def _parse_hostport(text: str, part: str, default_port: int | None = None,
                    family: str = "") -> Target:
    if part.startswith("["):
        host, sep, port = part[1:].partition("]")
        if not sep or (port and not port.startswith(":")) or (not port and default_port is None):
            raise TargetError(f"target {text!r}: expected [ipv6]:port")
        port = port[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetError(f"target {text!r}: {host!r} is not an IPv6 address") from None
    elif family == "ipv6":   # ipv6:::1 without brackets: an address, no port
        host, port = part, ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetError(f"target {text!r}: {host!r} is not an IPv6 address "
                              "(write [address]:port)") from None
    else:
        host, sep, port = part.rpartition(":")
        if not sep:
            if default_port is None:
                raise TargetError(f"target {text!r}: expected host:port")
            host, port = part, ""
        if not host:
            raise TargetError(f"target {text!r}: expected host:port")
        if not _HOSTNAME.match(host):
            raise TargetError(f"target {text!r}: {host!r} is not a host name or address")
        if family == "ipv4":
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise TargetError(f"target {text!r}: {host!r} is not an IPv4 address") from None
    if not port and default_port is not None:
        return Target(host, default_port)
    if not is_number(port) or not 0 < int(port) < 65536:
        raise TargetError(f"target {text!r}: port must be 1..65535")
    return Target(host, int(port))


def _parse_named(text: str, scheme: str, rest: str) -> Target:
    if scheme == "dns":
        if rest.startswith("//"):
            authority, slash, rest = rest[2:].partition("/")
            if not slash:
                raise TargetError(f"target {text!r}: expected dns:///host:port")
            if authority:
                raise TargetError(f"target {text!r}: a DNS server ({authority}) is not supported: "
                                  "write dns:///host:port")
        t = _parse_hostport(text, rest, DEFAULT_PORT)
        return Target(t.host, t.port, "dns")
    parts = rest.split(",")
    if not all(parts):
        raise TargetError(f"target {text!r}: expected {scheme}:address:port[,address:port...]")
    addrs = tuple(_parse_hostport(text, p, DEFAULT_PORT, scheme) for p in parts)
    return Target(addrs[0].host, addrs[0].port, scheme, addrs)


# -- resolution and round-robin --------------------------------------------------------

_cache: dict[tuple[str, int], tuple[float, tuple[Target, ...]]] = {}
_turn: dict[str, int] = {}
_lock = threading.Lock()


def resolve(target: Target, now: float | None = None) -> tuple[Target, ...]:
    """The addresses a target names, each a plain Target(ip, port), in a stable
    order. host:port is itself (resolved by the transport as always). A dns:
    name that does not resolve gives its last answer if there was one, else
    itself: connecting then fails like any unreachable server, and the call
    retries with its backoff."""
    if not target.scheme:
        return (target,)
    if target.addresses:
        return target.addresses
    now = time.monotonic() if now is None else now
    key = (target.host, target.port)
    hit = _cache.get(key)
    if hit and now - hit[0] < RESOLVE_TTL_S:
        return hit[1]
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return hit[1] if hit else (Target(target.host, target.port),)
    found = sorted({(fam, sa[0], sa[1]) for fam, _, _, _, sa in infos
                    if fam in (socket.AF_INET, socket.AF_INET6)})
    addrs = tuple(Target(ip, port) for _, ip, port in found) or (Target(target.host, target.port),)
    _cache[key] = (now, addrs)
    return addrs


def next_address(target: Target) -> Target:
    """The address the next new stream to this target goes to: round-robin per
    target name over resolve(target)."""
    addrs = resolve(target)
    if len(addrs) == 1:
        return addrs[0]
    with _lock:
        n = _turn.get(target.authority, 0)
        _turn[target.authority] = n + 1
    return addrs[n % len(addrs)]
