"""The reader trusts nothing it reads from shared memory: record headers and
ring positions scribbled on by a buggy (or hostile) module are reported as
E_CORRUPT in batch.errors, never delivered as frames, and the ring is usable
again afterwards.

Fields are found by value in the mapped file: a record header by its whole
24-byte content (ss_rec, as ss_layout.h documents it, with a unique ts_ns),
a ring's head and tail by the distinctive byte counts they hold."""
import mmap
import struct

import pytest

from smartstream import _ring
from smartstream._ring import Batch, ModuleStream, Pool, RingError

FRAME = 1000                 # bytes; a record of 24 + 1000 = 1024 bytes
REC = 1024
TS = 0x5A17_0000_0000_0000   # ts_ns of frame i is TS + i: unique in the file


def rec_hdr(length, typ, track, seq, ts):
    return struct.pack("<IHHQQ", length, typ, track, seq, ts)


class Setup:
    def __init__(self, path):
        self.pool = Pool.open(path, 1)
        self.ms = ModuleStream(self.pool, "victim", "h:1", 16000, tracks=3)
        self.pool.watch(self.ms.slot, self.ms.generation)
        self.batch = Batch()
        self.f = open(path, "r+b")
        self.m = mmap.mmap(self.f.fileno(), 0)
        self.n = 0

    def write(self, count, track=_ring.TRACK_IN):
        for _ in range(count):
            self.ms.write(track, bytes([0x41 + self.n % 16]) * FRAME, TS + self.n)
            self.n += 1

    def drain(self):
        self.pool.drain(self.batch)
        return self.batch.records(), self.batch.errors

    def find(self, needle, align=1):
        hits = []
        at = self.m.find(needle)
        while at >= 0:
            if at % align == 0:
                hits.append(at)
            at = self.m.find(needle, at + 1)
        assert len(hits) == 1, (needle, hits)
        return hits[0]

    def find_u64(self, value):
        return self.find(struct.pack("<Q", value), align=8)

    def close(self):
        self.m.close()
        self.f.close()
        self.pool.close()


@pytest.fixture
def s(shm_path):
    s = Setup(shm_path)
    yield s
    s.close()


def test_record_length_out_of_range(s):
    s.write(3)
    at = s.find(rec_hdr(FRAME, _ring.REC_AUDIO, 0, 1, TS + 1))
    s.m[at:at + 4] = struct.pack("<I", 0x7FFFFFF0)
    recs, errs = s.drain()
    # ss_rec_drain resets the whole ring to its tail (as ss_ring.h documents),
    # including the good frame before the bad header.
    assert recs == []
    assert errs == [(0, _ring.E_CORRUPT, 3 * REC)]
    s.write(2)
    recs, errs = s.drain()
    assert errs == [] and [(r[3], r[4]) for r in recs] == [(3, TS + 3), (4, TS + 4)]


@pytest.mark.parametrize("field,value", [
    ("track", 1),            # an outbound frame in the inbound ring
    ("type", _ring.CTL_PAYLOAD),
    ("len", FRAME - 1),      # half a sample (same record size)
])
def test_record_of_the_wrong_kind_is_not_delivered(s, field, value):
    s.write(3)
    at = s.find(rec_hdr(FRAME, _ring.REC_AUDIO, 0, 1, TS + 1))
    fields = dict(len=FRAME, type=_ring.REC_AUDIO, track=0)
    fields[field] = value
    s.m[at:at + 8] = struct.pack("<IHH", fields["len"], fields["type"], fields["track"])
    recs, errs = s.drain()
    assert [r[3] for r in recs] == [0, 2]  # the others are fine
    assert errs == [(0, _ring.E_CORRUPT, fields["len"])]


def test_pad_record_with_wrong_length(s):
    s.write(3)
    at = s.find(rec_hdr(FRAME, _ring.REC_AUDIO, 0, 1, TS + 1))
    s.m[at:at + 8] = struct.pack("<IHH", 8, 0, 0)  # a PAD that does not reach the ring's end
    recs, errs = s.drain()
    assert recs == []
    assert errs == [(0, _ring.E_CORRUPT, 3 * REC)]
    s.write(1)
    recs, errs = s.drain()
    assert errs == [] and [r[3] for r in recs] == [3]


def test_tail_beyond_capacity(s):
    cap = _ring.up_bytes(16000)   # Setup's call
    s.write(37)
    s.drain()
    s.write(4)
    tail = s.find_u64(41 * REC)
    s.m[tail:tail + 8] = struct.pack("<Q", 41 * REC + 3 * cap)
    recs, errs = s.drain()
    assert recs == [] and [e[:2] for e in errs] == [(0, _ring.E_CORRUPT)]
    s.write(2)
    recs, errs = s.drain()
    assert errs == [] and [r[3] for r in recs] == [41, 42]


def test_head_beyond_tail(s):
    s.write(37)
    s.drain()
    s.write(4)
    head = s.find_u64(37 * REC)
    s.m[head:head + 8] = struct.pack("<Q", 41 * REC + 4096)
    with pytest.raises(RingError, match="corrupt"):
        s.write(1)  # the producer refuses to write into a ring that makes no sense
    recs, errs = s.drain()
    assert recs == [] and [e[:2] for e in errs] == [(0, _ring.E_CORRUPT)]
    s.write(2)
    recs, errs = s.drain()
    assert errs == [] and [r[3] for r in recs] == [41, 42]


@pytest.mark.parametrize("what", ["head_past_tail", "tail_far_ahead"])
def test_bytes_lost_is_at_most_the_ring(s, what):
    cap = _ring.up_bytes(16000)   # Setup's call
    s.write(37)
    s.drain()
    s.write(4)
    if what == "head_past_tail":
        at, value = s.find_u64(37 * REC), 41 * REC + 4096
    else:
        at, value = s.find_u64(41 * REC), 41 * REC + 3 * cap
    s.m[at:at + 8] = struct.pack("<Q", value)
    recs, errs = s.drain()
    assert len(errs) == 1 and errs[0][1] == _ring.E_CORRUPT
    assert errs[0][2] <= cap


def test_other_tracks_and_slots_unaffected(s):
    s.write(3, _ring.TRACK_IN)
    s.write(2, _ring.TRACK_OUT)
    s.ms.post(_ring.CTL_PAYLOAD, b"{}")
    at = s.find(rec_hdr(FRAME, _ring.REC_AUDIO, 0, 0, TS + 0))
    s.m[at:at + 4] = struct.pack("<I", 0xFFFFFFFF)
    recs, errs = s.drain()
    assert errs == [(0, _ring.E_CORRUPT, 3 * REC)]
    assert [(r[1], r[2], r[3]) for r in recs] == [
        (_ring.REC_AUDIO, 1, 0), (_ring.REC_AUDIO, 1, 1), (_ring.CTL_PAYLOAD, 0, 0)]
