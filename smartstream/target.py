"""AI server addresses as the module hands them over: "host:port"."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class TargetError(ValueError):
    """The target string is not host:port."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.authority


def parse_target(text: str) -> Target:
    """host:port, [v6]:port. Raises TargetError saying what is wrong."""
    if not text or len(text) > 255:
        raise TargetError(f"target {text!r}: expected host:port")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise TargetError(f"target {text!r}: expected [ipv6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetError(f"target {text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise TargetError(f"target {text!r}: expected host:port")
        if not _HOSTNAME.match(host):
            raise TargetError(f"target {text!r}: {host!r} is not a host name or address")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"target {text!r}: port must be 1..65535")
    return Target(host, int(port))
