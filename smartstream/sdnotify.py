"""systemd's readiness protocol (sd_notify), without a dependency: one datagram
to the unix socket named by $NOTIFY_SOCKET. Outside systemd it does nothing."""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("smartstream.sdnotify")


def notify(state: str) -> None:
    """state: "READY=1", "STOPPING=1", ... (newline-separated assignments)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):   # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as e:   # systemd would time us out; the gateway itself is fine
        log.error("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], e)
