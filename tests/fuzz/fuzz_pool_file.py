#!/usr/bin/env python3
"""The pool file and what is in it: the pool header, slot headers and ring
positions and records, all written by another process (FreeSWITCH's module,
or whatever scribbled on /dev/shm). Read by the daemon through
smartstream._ring (csrc/ss_pool.c, ss_ring.c): Pool.attach/open, slot_info,
scan, watch, drain, the Router and Uplink the drained frames go to, and the
daemon's own writes into rings whose positions it must not trust.

Input: byte 0 picks the file.
  bit 7 set: the rest of the input is the file's start, and the rest of a
    valid 1-slot pool follows it (bit 6 set: nothing follows, a short file).
  else: a valid pool (bit 0: 2 slots, else 1) with a live call that has
    frames and control messages queued, patched by records
    [anchor:2 LE][delta:int8][n:1][n bytes]: the n bytes are written at
    delta from the anchor-th non-zero 8-byte word of the valid file (the
    header fields, ring positions, record headers: found by value, so no
    offset here depends on the C layout). Bit 1: the daemon's Pool.open
    instead of Pool.attach.

Contract: only smartstream._ring.RingError (and subclasses) escape; no
crash; every delivered record is within the limits the layout promises.
Coverage note: the C code is not instrumented (see README.md), so this
fuzzer leans on the layout-aware input form more than on feedback.
"""
import os
import time

import atheris

from _common import check, main, shm_path

with atheris.instrument_imports(include=["smartstream"]):
    from smartstream import _ring
    from smartstream._ring import Batch, ModuleStream, Pool, RingError
    from smartstream._router import Router
    from smartstream._uplink import Uplink

PATH = shm_path("pool")
CTL_TYPES = {_ring.CTL_PAYLOAD, _ring.CTL_DTMF}
ERROR_CODES = {_ring.E_CORRUPT, _ring.E_STALE, _ring.E_BUSY}
PCM = bytes(range(1, 201)) * 3   # 600 bytes, non-zero
MAX_SLOTS_CHECKED = 8


def make_template(slots: int) -> bytes:
    """A pool a daemon left, with a live call in slot 0 (frames on both
    tracks, some already drained, and control messages both ways) and in a
    2-slot pool a call that ended in slot 1."""
    path = shm_path("template")
    pool = Pool.open(path, slots)
    try:
        ms = ModuleStream(pool, "fuzz-call-0001", "127.0.0.1:50051", 16000, requested_rate=8000,
                          tracks=3, codec="L16", caller="1000", callee="2000",
                          metadata='{"k": "v"}')
        pool.watch(ms.slot, ms.generation)
        batch = Batch()
        for i in range(6):
            ms.write(i % 2, bytes(320), 1_000_000 + i)
        pool.drain(batch)
        for i in range(6, 10):
            ms.write(i % 2, bytes(320), 1_000_000 + i)
        ms.post(_ring.CTL_PAYLOAD, b'{"a": [1, 2.5, "x", null, true]}')
        ms.post(_ring.CTL_DTMF, b"5\x64\x00\x00\x00")
        pool.write_tts(ms.slot, ms.generation, PCM)
        pool.post_control(ms.slot, ms.generation, _ring.CTL_MARK, b"mark-1")
        if slots > 1:
            ended = ModuleStream(pool, "fuzz-call-0002", "[::1]:443", 48000, tracks=1, flags=1)
            ended.write(0, bytes(960), 2_000_000)
            ended.close()
        pool.close()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


TEMPLATES = {n: make_template(n) for n in (1, 2)}
ANCHORS = {n: [off for off in range(0, len(t), 8) if t[off:off + 8] != bytes(8)]
           for n, t in TEMPLATES.items()}


def build_file(data: bytes) -> tuple[bytes, int, bool]:
    """The file's bytes, its slot count if valid, and whether to open it as the daemon."""
    mode = data[0]
    if mode & 0x80:
        t = TEMPLATES[1]
        body = data[1:]
        return (body if mode & 0x40 else body + t[len(body):]), 1, False
    slots = 2 if mode & 1 else 1
    buf = bytearray(TEMPLATES[slots])
    anchors = ANCHORS[slots]
    i = 1
    while i + 4 <= len(data):
        anchor = int.from_bytes(data[i:i + 2], "little")
        delta = int.from_bytes(data[i + 2:i + 3], "little", signed=True)
        n = data[i + 3]
        patch = data[i + 4:i + 4 + n]
        i += 4 + n
        at = anchors[anchor % len(anchors)] + delta
        if 0 <= at < len(buf):
            buf[at:at + len(patch)] = patch[:len(buf) - at]
    return bytes(buf), slots, bool(mode & 2)


def ring_call(fn, *args):
    """fn(*args), where a RingError is an allowed answer (None) with a message."""
    try:
        return fn(*args)
    except RingError as e:
        check(str(e), lambda: f"{fn.__name__} raised {type(e).__name__} with no message")
        return None


def check_info(i: int, info: dict) -> None:
    check(info["slot"] == i and info["uuid"], lambda: f"slot {i}: {info}")
    check(8000 <= info["channel_rate"] <= 48000, lambda: f"slot {i}: {info}")
    check(not info["requested_rate"] or 8000 <= info["requested_rate"] <= 48000,
          lambda: f"slot {i}: {info}")
    check(info["tracks"] in (1, 2, 3), lambda: f"slot {i}: tracks {info['tracks']}")
    for key in ("uuid", "target", "codec", "caller", "callee", "metadata"):
        check(isinstance(info[key], str) and "\0" not in info[key],
              lambda: f"slot {i}: {key} {info[key]!r}")


def check_batch(batch: Batch, n: int, watched: dict) -> None:
    for slot, type_, track, seq, ts, payload in batch.records():
        check(slot in watched, lambda: f"record for slot {slot}, not watched")
        if type_ in (_ring.REC_AUDIO, _ring.REC_SILENCE):
            check(track in (_ring.TRACK_IN, _ring.TRACK_OUT), lambda: f"audio on track {track}")
            check(len(payload) % 2 == 0 and len(payload) <= _ring.FRAME_BYTES_MAX,
                  lambda: f"audio record of {len(payload)} bytes")
        else:
            check(type_ in CTL_TYPES, lambda: f"record of type {type_} delivered")
            check(len(payload) <= _ring.CTL_MSG_MAX, lambda: f"control of {len(payload)} bytes")
    for slot, code, lost in batch.errors:
        check(slot < n and code in ERROR_CODES and lost >= 0,
              lambda: f"ring error {(slot, code, lost)}")


def exercise(pool: Pool) -> None:
    n = pool.slot_count
    check(n >= 1, "a pool of no slots attached")
    infos = {}
    for i in range(min(n, MAX_SLOTS_CHECKED)):
        info = ring_call(pool.slot_info, i)
        if info is not None:
            check_info(i, info)
            infos[i] = info
        c = pool.counters(i)
        check(all(isinstance(v, int) and v >= 0 for v in c.values()), lambda: f"counters {c}")
        pool.tts_position(i)
        if hasattr(pool, "end_reason"):
            pool.end_reason(i)
    pool.daemon_alive()
    router, watched = Router(n), {}
    for slot, gen, state in pool.scan():
        check(slot < n, lambda: f"scan gave slot {slot} of {n}")
        if gen == 0 or slot >= MAX_SLOTS_CHECKED:
            continue
        ring_call(pool.watch, slot, gen)
        watched[slot] = gen
        info = infos.get(slot)
        if info is not None:   # as Gateway._open_call does
            tracks = [t for t in (0, 1) if info["tracks"] & (1 << t)]
            router.route(slot, Uplink(info["channel_rate"], info["requested_rate"]
                                      or info["channel_rate"], tracks, 200))
    batch = Batch()
    for _ in range(2):
        count = pool.drain(batch)
        check(count == len(batch), "drain's count is not the batch's")
        check_batch(batch, n, watched)
        router.deliver(batch, time.monotonic_ns())
    for slot, gen in watched.items():   # the daemon writes into rings the module positions
        ring_call(pool.write_tts, slot, gen, PCM)
        ring_call(pool.post_control, slot, gen, _ring.CTL_MARK, b"m")
        ring_call(pool.clear_tts, slot, gen)
        pool.set_link(slot, gen, _ring.LINK_STREAMING)
        ring_call(pool.free_slot, slot, gen)
    pool.heartbeat()


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    content, slots, as_daemon = build_file(data)
    # 0600: a file with bits for others is refused before its contents are read.
    with open(os.open(PATH, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(content)
    try:
        pool = ring_call(Pool.open, PATH, slots) if as_daemon else ring_call(Pool.attach, PATH)
    finally:
        os.unlink(PATH)
    if pool is not None:
        exercise(pool)
        pool.close()


if __name__ == "__main__":
    main(TestOneInput)
