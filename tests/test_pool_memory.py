"""Pool memory comes with calls: on a small tmpfs the daemon says at start how
many calls fit; a call that does not fit is refused at its start, and a
freed slot gives its pages to the next call (the C tests check the same for
every ring: csrc/tests/test_private.c, test_full_tmpfs)."""
from __future__ import annotations

import logging
import os
import subprocess

import pytest

from smartstream import _ring
from smartstream._ring import ModuleStream, RingError
from smartstream.config import Config
from smartstream.gateway import Gateway


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs: headers for 32 slots, rings for six 8 kHz calls."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "shm"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=True)


async def test_a_small_filesystem_is_told_at_start_and_refuses_calls_past_it(small_tmpfs, caplog):
    path = str(small_tmpfs / "small.pool")
    with caplog.at_level(logging.WARNING, logger="smartstream.gateway"):
        gw = Gateway(Config(pool_path=path, pool_slots=32))
    per_call = _ring.call_bytes(8000, _ring.TRACKS_IN)
    vfs = os.statvfs(path)
    room = vfs.f_bavail * vfs.f_frsize // per_call
    assert 0 < room < 32
    assert (f"its filesystem has 0 MiB free, room for {room} of the 32 slots' calls at 8 kHz "
            f"inbound ({per_call >> 10} KiB each") in caplog.text
    gw.pool.heartbeat()
    calls = [ModuleStream(gw.pool, f"c{i}", "127.0.0.1:1", 8000) for i in range(room)]
    with pytest.raises(RingError, match="pool memory full"):
        ModuleStream(gw.pool, "one-too-many", "127.0.0.1:1", 8000)
    first = calls[0]
    first.close()
    gw.pool.free_slot(first.slot, first.generation)
    ModuleStream(gw.pool, "next", "127.0.0.1:1", 8000).write(_ring.TRACK_IN, b"\x01\x00" * 160)
    await gw.stop()
