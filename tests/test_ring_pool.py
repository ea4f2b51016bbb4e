"""The pool file: creation, re-attachment, and every way a file on /dev/shm can
be wrong (stale, short, foreign, corrupt) being refused with a PoolError that
says what is wrong, before any slot is touched; and slot headers with values
out of range being refused by slot_info with a SlotError naming the field.

Offsets in the file are never taken from the C structs: fields are found by
the values written into them (the magic's text, a slot count, a uuid).
"""
import mmap
import os
import re
import struct

import pytest

from smartstream import _ring
from smartstream._ring import ModuleStream, Pool, PoolError, RingError, SlotError


def make_pool(path, slots=2):
    p = Pool.open(path, slots)
    p.close()
    return path


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def find_once(buf, needle, start=0, end=None, align=1):
    """The one offset at which needle occurs in buf[start:end], aligned."""
    hits = [m.start() for m in re.finditer(re.escape(needle), buf[start:end])
            if (start + m.start()) % align == 0]
    assert len(hits) == 1, f"{needle!r} found {len(hits)} times"
    return start + hits[0]


HDR_SLOTS = 7   # a slot count no other header field equals (the version is small too)


@pytest.fixture
def header(shm_path, layout):
    """Offsets of the pool header fields in a HDR_SLOTS-slot pool, found by value."""
    make_pool(shm_path, HDR_SLOTS)
    size = os.path.getsize(shm_path)
    other = shm_path + "-one"
    make_pool(other, 1)
    slot_bytes = (size - os.path.getsize(other)) // (HDR_SLOTS - 1)
    head = read(shm_path)[:64]  # the static part of the header comes first
    magic = find_once(head, b"SSTMPOOL")
    return dict(
        size=size, slot_bytes=slot_bytes,
        magic=magic,
        version=find_once(head, struct.pack("<I", _ring.LAYOUT_VERSION), magic + 8, align=4),
        header_bytes=find_once(head, struct.pack("<I", size - HDR_SLOTS * slot_bytes), align=4),
        slot_count=find_once(head, struct.pack("<I", HDR_SLOTS), magic + 8, align=4),
        slot_bytes_at=find_once(head, struct.pack("<Q", slot_bytes), align=8),
        pool_bytes=find_once(head, struct.pack("<Q", size), align=8))


def attach_error(path):
    with pytest.raises(PoolError) as e:
        Pool.attach(path)
    return str(e.value)


def test_layout_constants_match_the_header(layout):
    assert _ring.LAYOUT_VERSION == layout["SS_LAYOUT_VERSION"]
    assert _ring.FRAME_BYTES_MAX == layout["SS_FRAME_BYTES_MAX"]
    assert _ring.CTL_MSG_MAX == layout["SS_CTL_MSG_MAX"]
    assert _ring.HEARTBEAT_STALE_NS == layout["SS_HEARTBEAT_STALE_NS"]


def test_create_then_attach(shm_path, header, layout):
    assert header["magic"] == 0
    assert header["size"] == layout["SS_POOL_HDR_BYTES"] + HDR_SLOTS * header["slot_bytes"]
    p = Pool.attach(shm_path)
    assert p.slot_count == HDR_SLOTS
    assert p.daemon_epoch == 1
    assert p.scan() == []  # every slot free, generation 0
    p.close()


@pytest.mark.parametrize("field,value,message", [
    ("magic", b"NOTAPOOL", "bad magic"),
    ("version", struct.pack("<I", _ring.LAYOUT_VERSION + 1), "layout version"),
    ("version", struct.pack("<I", 0), "layout version"),
    ("header_bytes", struct.pack("<I", 8192), "header_bytes"),
    ("slot_bytes_at", "+64", "slot_bytes"),
    ("slot_bytes_at", "-64", "slot_bytes"),
    ("slot_count", struct.pack("<I", 0), "slot_count"),
    ("slot_count", struct.pack("<I", 3), "pool_bytes"),   # file and header disagree
    ("slot_count", struct.pack("<I", 70000), "slot_count"),
    ("pool_bytes", "+4096", "pool_bytes"),
])
def test_corrupt_header_is_refused(shm_path, header, field, value, message):
    if isinstance(value, str):  # relative to the right value
        value = struct.pack("<Q", (header["slot_bytes"] if field == "slot_bytes_at" else
                                   header["size"]) + int(value))
    patch(shm_path, header[field], value)
    assert message in attach_error(shm_path)
    before = read(shm_path)
    # The daemon refuses it too, and leaves the file as it was.
    with pytest.raises(PoolError, match=re.escape(message)):
        Pool.open(shm_path, 2)
    assert read(shm_path) == before


@pytest.mark.parametrize("keep", ["all_but_one_byte", "half", "one_slot_short", "header_only"])
def test_truncated_pool_is_refused(shm_path, header, keep):
    size = header["size"]
    new = {"all_but_one_byte": size - 1, "half": size // 2,
           "one_slot_short": size - header["slot_bytes"],
           "header_only": size - HDR_SLOTS * header["slot_bytes"]}[keep]
    os.truncate(shm_path, new)
    msg = attach_error(shm_path)
    assert "truncated" in msg and str(new) in msg and str(size) in msg
    with pytest.raises(PoolError, match="truncated"):
        Pool.open(shm_path, 2)
    assert os.path.getsize(shm_path) == new


@pytest.mark.parametrize("size", [0, 1, 16, 40])
def test_file_shorter_than_header(shm_path, header, size):
    os.truncate(shm_path, size)
    msg = attach_error(shm_path)
    assert "truncated" in msg and f"{size} bytes" in msg
    with pytest.raises(PoolError, match="truncated"):
        Pool.open(shm_path, 2)


def private_file(path, data=b""):
    """A file as only its owner can make it (the pool's checks pass)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, data)
    os.close(fd)


def test_empty_file_not_made_by_us(shm_path):
    private_file(shm_path)
    assert "truncated" in attach_error(shm_path)
    with pytest.raises(PoolError, match="truncated"):
        Pool.open(shm_path, 4)
    assert os.path.getsize(shm_path) == 0


def test_garbage_file(shm_path):
    private_file(shm_path, os.urandom(1 << 16))
    assert "magic" in attach_error(shm_path)


def test_nonexistent_file(shm_path):
    msg = attach_error(shm_path)
    assert shm_path in msg and "No such file" in msg


def test_directory_instead_of_file(shm_path):
    os.mkdir(shm_path)
    try:
        with pytest.raises(PoolError, match=re.escape(shm_path)):
            Pool.attach(shm_path)
    finally:
        os.rmdir(shm_path)


def test_open_creates_with_mode_0660_whatever_the_umask(shm_path):
    old = os.umask(0o077)
    try:
        p = Pool.open(shm_path, 1)
    finally:
        os.umask(old)
    assert os.stat(shm_path).st_mode & 0o7777 == 0o660
    assert not p.reattached
    p.close()
    p = Pool.open(shm_path + "-b", 1, 0o600)
    assert os.stat(shm_path + "-b").st_mode & 0o7777 == 0o600
    p.close()


def allocated(path):
    return os.stat(path).st_blocks * 512


def test_pool_memory_follows_the_calls(shm_path):
    """The headers are allocated with the pool; a call's rings, sized by its
    rate and tracks, when it claims its slot (so no write finds a page the
    tmpfs has no room for); freeing the slot gives them back."""
    p = Pool.open(shm_path, 3)
    assert os.stat(shm_path).st_size == _ring.pool_bytes(3)
    fixed = _ring.pool_fixed_bytes(3)
    assert allocated(shm_path) == fixed
    narrow = ModuleStream(p, "narrow", "127.0.0.1:9", 8000)   # inbound only
    assert allocated(shm_path) == fixed + _ring.call_bytes(8000, _ring.TRACKS_IN)
    wide = ModuleStream(p, "wide", "127.0.0.1:9", 48000, tracks=_ring.TRACKS_IN | _ring.TRACKS_OUT)
    both = _ring.call_bytes(8000, _ring.TRACKS_IN) + _ring.call_bytes(48000, 3)
    assert allocated(shm_path) == fixed + both
    for m in (narrow, wide):
        p.watch(m.slot, m.generation)
        m.write(_ring.TRACK_IN, b"\x01\x00" * 160, 1)
        m.close()
        p.free_slot(m.slot, m.generation)
    assert allocated(shm_path) == fixed
    p.close()


def test_rings_are_sized_by_rate(layout):
    """ss_layout.h's sizes: at least 3.5 s of 20 ms frames up (2.7 s at 48 kHz,
    the largest ring), half a second of TTS down (0.68 s at 48 kHz)."""
    up = {r: _ring.up_bytes(r) for r in (8000, 16000, 24000, 32000, 48000)}
    assert up == {8000: 64 << 10, 16000: 128 << 10, 24000: 256 << 10, 32000: 256 << 10,
                  48000: layout["SS_UP_BYTES"]}
    down = {r: _ring.down_bytes(r) for r in (8000, 16000, 24000, 32000, 48000)}
    assert down == {8000: 8 << 10, 16000: 16 << 10, 24000: 32 << 10, 32000: 32 << 10,
                    48000: layout["SS_DOWN_BYTES"]}
    assert _ring.call_bytes(8000, _ring.TRACKS_IN) == (64 + 8 + 2 * 16) << 10
    frame = {r: _ring.frame_bytes_max(r) for r in (8000, 16000, 44100, 48000)}
    assert frame == {8000: 1920, 16000: 3840, 44100: 10584, 48000: layout["SS_FRAME_BYTES_MAX"]}


def test_open_reattaches_a_valid_pool(shm_path):
    p = Pool.open(shm_path, 3)
    assert (p.reattached, p.daemon_epoch, p.daemon_alive()) == (False, 1, True)
    m = ModuleStream(p, "survivor", "127.0.0.1:9", 8000)
    m.write(_ring.TRACK_IN, b"\x01\x00" * 160, 42)
    p.close()  # the daemon goes (clears its heartbeat); the call stays
    assert not Pool.attach(shm_path).daemon_alive()
    # A new daemon, even asking for another slot count, gets the same pool.
    p = Pool.open(shm_path, 7)
    assert (p.reattached, p.daemon_epoch, p.slot_count, p.daemon_alive()) == (True, 2, 3, True)
    assert p.scan() == [(m.slot, m.generation, _ring.SLOT_ACTIVE)]
    assert p.slot_info(m.slot)["uuid"] == "survivor"
    p.watch(m.slot, m.generation)
    b = _ring.Batch()
    assert p.drain(b) == 1
    assert b.records()[0][1:] == (_ring.REC_AUDIO, _ring.TRACK_IN, 0, 42, b"\x01\x00" * 160)
    p.close()
    p = Pool.open(shm_path, 3)
    assert (p.reattached, p.daemon_epoch) == (True, 3)
    p.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the file to another user")
def test_open_refuses_a_pool_owned_by_someone_else(shm_path):
    make_pool(shm_path)
    os.chown(shm_path, 65534, 65534)
    with pytest.raises(PoolError, match="owned by uid 65534"):
        Pool.open(shm_path, 2)
    # The module's side refuses it too, unless told that uid is the daemon's.
    with pytest.raises(PoolError, match="owned by uid 65534, expected uid 0"):
        Pool.attach(shm_path)
    Pool.attach(shm_path, owner=65534).close()


def test_module_without_daemon_or_slot(shm_path):
    p = Pool.open(shm_path, 1)
    m = ModuleStream(p, "first", "h:1")
    with pytest.raises(RingError, match="pool full"):
        ModuleStream(p, "second", "h:1")
    m.close()
    p.close()  # heartbeat cleared
    with pytest.raises(RingError, match="daemon not running"):
        ModuleStream(Pool.attach(shm_path), "third", "h:1")


# --- slot headers ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(uuid=""), "uuid"),
    (dict(uuid="u" * 64), "uuid"),
    (dict(target=""), "target"),
    (dict(target="t" * 256), "target"),
    (dict(channel_rate=7999), "channel rate"),
    (dict(channel_rate=48001), "channel rate"),
    (dict(channel_rate=0), "channel rate"),
    (dict(requested_rate=100), "sample rate"),
    (dict(requested_rate=96000), "sample rate"),
    (dict(tracks=0), "tracks"),
    (dict(tracks=4), "tracks"),
    (dict(tracks=7), "tracks"),
    (dict(metadata="m" * 4096), "metadata"),
    (dict(codec="c" * 32), "codec"),
    (dict(caller="1" * 64), "caller"),
])
def test_module_refuses_out_of_range_calls(shm_path, kwargs, message):
    """ss_stream_open validates what the module asks for and claims nothing."""
    p = Pool.open(shm_path, 1)
    args = dict(uuid="ok", target="h:1", channel_rate=16000)
    args.update(kwargs)
    with pytest.raises(RingError, match=message):
        ModuleStream(p, args.pop("uuid"), args.pop("target"), args.pop("channel_rate"), **args)
    assert p.scan() == []
    m = ModuleStream(p, "ok", "h:1", 16000, metadata="m" * 4095, codec="c" * 31)  # the limits
    assert p.slot_info(m.slot)["metadata"] == "m" * 4095
    p.close()


class SlotBytes:
    """The pool file mapped with Python's mmap, to scribble on a slot header
    found by its uuid."""

    def __init__(self, path):
        self.f = open(path, "r+b")
        self.m = mmap.mmap(self.f.fileno(), 0)

    def find(self, needle):
        return find_once(self.m, needle)

    def close(self):
        self.m.close()
        self.f.close()


@pytest.fixture
def slot_pair(shm_path):
    """Two calls whose header fields differ in known, distinctive values,
    so every field's distance from the uuid can be found by value."""
    p = Pool.open(shm_path, 2)
    a = ModuleStream(p, "uuid-A-7f3e9c2b51", "tgt-A:1", 44100, requested_rate=11025, tracks=1,
                     flags=0x5EED0001, caller="A-caller", metadata='{"a":1}')
    ModuleStream(p, "uuid-B-7f3e9c2b51", "tgt-B:1", 22050, requested_rate=32000, tracks=3,
                     flags=0x5EED0002, caller="B-caller", metadata='{"b":2}')
    raw = SlotBytes(shm_path)
    ua, ub = raw.find(b"uuid-A-7f3e9c2b51\0"), raw.find(b"uuid-B-7f3e9c2b51\0")

    def rel(va, vb, fmt="<I"):
        """Offset from the uuid of the field holding va in A and vb in B."""
        hits = [d for d in range(-256, 8192, 4)
                if raw.m[ua + d:ua + d + 4] == struct.pack(fmt, va)
                and raw.m[ub + d:ub + d + 4] == struct.pack(fmt, vb)]
        assert len(hits) == 1, hits
        return hits[0]

    off = dict(channel_rate=rel(44100, 22050), requested_rate=rel(11025, 32000),
               tracks=rel(1, 3), flags=rel(0x5EED0001, 0x5EED0002),
               target=raw.find(b"tgt-A:1\0") - ua, caller=raw.find(b"A-caller\0") - ua,
               metadata=raw.find(b'{"a":1}\0') - ua)
    yield p, a, raw, ua, off
    raw.close()
    p.close()


def test_slot_info_reads_what_the_module_wrote(slot_pair):
    p, a, raw, ua, off = slot_pair
    info = p.slot_info(a.slot)
    assert info["uuid"] == "uuid-A-7f3e9c2b51"
    assert (info["channel_rate"], info["requested_rate"], info["tracks"], info["flags"]) == (
        44100, 11025, 1, 0x5EED0001)
    assert info["state"] == _ring.SLOT_ACTIVE and info["generation"] == a.generation == 1
    assert len(set(off.values())) == len(off)


@pytest.mark.parametrize("field,value,message", [
    ("uuid", b"x" * 64, "uuid is not NUL-terminated"),
    ("uuid", b"\0", "empty uuid"),
    ("uuid", b"\xff\xfe\0", "uuid is not valid UTF-8"),
    ("target", b"t" * 256, "target is not NUL-terminated"),
    ("caller", b"\xc3(\0", "caller is not valid UTF-8"),
    ("metadata", b"m" * 4096, "metadata is not NUL-terminated"),
    ("channel_rate", struct.pack("<I", 7999), "channel_rate 7999"),
    ("channel_rate", struct.pack("<I", 0), "channel_rate 0"),
    ("channel_rate", struct.pack("<I", 0xFFFFFFFF), "channel_rate 4294967295"),
    ("requested_rate", struct.pack("<I", 48001), "requested_rate 48001"),
    ("tracks", struct.pack("<I", 0), "tracks 0"),
    ("tracks", struct.pack("<I", 4), "tracks 4"),
    ("tracks", struct.pack("<I", 0x80000001), "tracks 2147483649"),
])
def test_slot_info_refuses_corrupt_fields(slot_pair, field, value, message):
    p, a, raw, ua, off = slot_pair
    at = ua + (0 if field == "uuid" else off[field])
    raw.m[at:at + len(value)] = value
    with pytest.raises(SlotError, match=re.escape(f"slot {a.slot}: {message}")):
        p.slot_info(a.slot)
    p.slot_info(1 - a.slot)  # the other slot is untouched and fine


def test_slot_info_index_out_of_range(shm_path):
    p = Pool.open(shm_path, 2)
    with pytest.raises(IndexError):
        p.slot_info(2)
    with pytest.raises(IndexError):
        p.watch(5, 1)
    with pytest.raises(SlotError, match="generation 0"):
        p.watch(0, 0)
    p.close()
    with pytest.raises(PoolError, match="closed"):
        p.slot_info(0)
