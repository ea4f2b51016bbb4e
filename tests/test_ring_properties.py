"""Property tests of the three ring kinds, module side (ModuleStream, i.e.
csrc/ss_stream.c) against daemon side (Pool, i.e. _ring.pyx), in one process.

Every ring is checked against a model written from the comments in
csrc/ss_layout.h and ss_ring.h alone: records are a 24-byte header plus the
payload rounded up to 8, never wrap (the bytes left before the end of the
ring are skipped), and a full audio ring frees exactly as many of its oldest
records as the new one needs; byte rings never overwrite.
"""
import collections
import os
import random
import uuid

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from smartstream import _ring
from smartstream._ring import Batch, MessageTooLarge, ModuleStream, Pool, RingFull

RATE = 16000   # every Call here; its rings are sized for it
UP_BYTES, DOWN_BYTES = _ring.up_bytes(RATE), _ring.down_bytes(RATE)
FRAME_MAX, CTL_MAX = _ring.frame_bytes_max(RATE), _ring.CTL_MSG_MAX
REC_HDR = 24

SETTINGS = settings(max_examples=60, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Payload bytes come from here, at an offset that depends on the frame, so a
# frame delivered twice, out of order or with bytes from another frame shows.
NOISE = random.Random(1234).randbytes(1 << 20)


def payload(tag, n):
    off = (tag * 7919) % (len(NOISE) - n)
    return NOISE[off:off + n]


def rec_size(n):
    return REC_HDR + ((n + 7) & ~7)


class RecRingModel:
    """A record ring as the layout documents it."""

    def __init__(self, cap, drop_oldest):
        self.cap, self.drop_oldest = cap, drop_oldest
        self.head = self.tail = self.seq = self.dropped = self.rejected = 0
        self.q = collections.deque()  # (span, item or None for the skipped end of the ring)

    def write(self, item, n):
        need = rec_size(n)
        rem = self.cap - self.tail % self.cap
        pad = rem if rem < need else 0
        while self.tail + pad + need - self.head > self.cap:
            if not self.drop_oldest:
                self.rejected += 1
                return False
            span, old = self.q.popleft()
            self.head += span
            self.dropped += old is not None
        if pad:
            self.q.append((pad, None))
            self.tail += pad
        self.q.append((need, (self.seq, item)))
        self.tail += need
        self.seq += 1
        return True

    def take(self, k):
        """The consumer takes the k oldest records (skipping what has no record)."""
        out = []
        while self.q and (len(out) < k or self.q[0][1] is None):
            span, it = self.q.popleft()
            self.head += span
            if it is not None:
                out.append(it)
        return out

    def __len__(self):
        return sum(it is not None for _, it in self.q)


class Call:
    """A fresh pool with one daemon (Pool.open) and one call on slot 0, watched."""

    def __init__(self, path, tracks=3):
        self.path = path
        self.pool = Pool.open(path, 1)
        self.ms = ModuleStream(self.pool, "prop-" + uuid.uuid4().hex, "127.0.0.1:1", RATE,
                               tracks=tracks)
        self.idx, self.gen = self.ms.slot, self.ms.generation
        self.pool.watch(self.idx, self.gen)
        self.batch = Batch()

    def drain(self):
        n = self.pool.drain(self.batch)
        recs = self.batch.records()
        assert n == len(recs)
        assert self.batch.errors == []
        return recs

    def close(self):
        self.pool.close()
        os.unlink(self.path)


def pool_path():
    return f"/dev/shm/sstest-prop-{os.getpid()}-{uuid.uuid4().hex[:12]}"


even_sizes = st.one_of(
    st.integers(0, FRAME_MAX // 2).map(lambda k: 2 * k),
    st.sampled_from([0, 2, 4, 6, 8, 10, FRAME_MAX - 2, FRAME_MAX]))
up_ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.sampled_from([_ring.TRACK_IN, _ring.TRACK_OUT]), even_sizes,
              st.integers(1, 48)),
    st.tuples(st.just("drain")),
    st.tuples(st.just("drain_all"))), max_size=30)


@SETTINGS
@given(ops=up_ops)
def test_audio_rings_deliver_exactly_what_was_written(ops):
    """Writes of any allowed size interleaved with drains: each drain delivers
    the oldest queued frames, byte for byte, seq and ts intact; a reader that
    fell behind loses exactly the oldest frames (dropped counts them)."""
    c = Call(pool_path())
    try:
        models = {t: RecRingModel(UP_BYTES, drop_oldest=True) for t in (0, 1)}
        written = {0: 0, 1: 0}
        received = {0: [], 1: []}
        tag = 0

        def check_drain(recs):
            got = {0: [], 1: []}
            for slot, typ, track, seq, ts, data in recs:
                assert (slot, typ) == (c.idx, _ring.REC_AUDIO)
                got[track].append((seq, ts, data))
            for t in (0, 1):
                want = models[t].take(len(got[t]))
                assert [(s, ts, data) for s, (ts, data) in want] == got[t]
                received[t] += [s for s, _, _ in got[t]]
            return len(got[0]) + len(got[1])

        for op in ops + [("drain_all",)]:
            if op[0] == "write":
                _, track, size, count = op
                for _ in range(count):
                    tag += 1
                    data = payload(tag, size)
                    c.ms.write(track, data, tag)
                    models[track].write((tag, data), size)
                    written[track] += 1
            elif op[0] == "drain":
                queued = len(models[0]) + len(models[1])
                # Progress: a drain takes something whenever something is queued.
                assert (check_drain(c.drain()) > 0) == (queued > 0)
            else:
                while check_drain(c.drain()):
                    pass
                assert len(models[0]) == len(models[1]) == 0
                assert c.drain() == []  # empty stays empty

        counters = c.pool.counters(c.idx)
        event(f"wrapped: {max(m.tail for m in models.values()) > UP_BYTES}")
        event(f"dropped: {models[0].dropped + models[1].dropped > 0}")
        for t, key in ((0, "up_in_dropped"), (1, "up_out_dropped")):
            assert counters[key] == models[t].dropped
            assert len(received[t]) + counters[key] == written[t]
            assert received[t] == sorted(received[t])  # in order, never twice
            # The frames that were lost are older than every frame delivered after them.
            missing = sorted(set(range(written[t])) - set(received[t]))
            assert len(missing) == counters[key]
        assert counters["up_rejected"] == 0
    finally:
        c.close()


def test_every_frame_size_round_trips(shm_path):
    """Every allowed frame size, 0..FRAME_BYTES_MAX in whole samples, once per
    track, with a drain after every few frames: the ring wraps many times."""
    c = Call(shm_path)
    try:
        sizes = list(range(0, FRAME_MAX + 1, 2))
        pending = []
        total = 0
        for i, size in enumerate(sizes):
            for track in (0, 1):
                data = payload(2 * i + track, size)
                c.ms.write(track, data, 1 + i)
                pending.append((track, i, data))
            if i % 7 == 6 or i == len(sizes) - 1:
                recs = c.drain()
                assert sorted((r[2], r[3], r[5]) for r in recs) == sorted(pending)
                total += len(recs)
                pending = []
        assert total == 2 * len(sizes)
        cnt = c.pool.counters(c.idx)
        assert cnt["up_in_dropped"] == cnt["up_out_dropped"] == cnt["up_rejected"] == 0
        # Sizes that are not whole samples or exceed the maximum are refused.
        with pytest.raises(ValueError):
            c.ms.write(0, b"\x00" * 3)
        with pytest.raises(MessageTooLarge):
            c.ms.write(0, b"\x00" * (FRAME_MAX + 2))
        assert c.pool.counters(c.idx)["up_rejected"] == 1
        assert c.drain() == []
    finally:
        c.pool.close()


def fill_sizes(nbytes):
    """Frame sizes whose records take exactly nbytes of ring."""
    sizes, left = [], nbytes
    while left > 2 * rec_size(FRAME_MAX):
        sizes.append(FRAME_MAX)
        left -= rec_size(FRAME_MAX)
    half = (left // 2) & ~7
    sizes += [half - REC_HDR, left - half - REC_HDR]
    assert sum(map(rec_size, sizes)) == nbytes and max(sizes) <= FRAME_MAX
    return sizes


@pytest.mark.parametrize("first", [
    # Fill so that the next record lands exactly at the end of the ring, then
    # so that fewer than a header's bytes are left (skipped without a header),
    # then so that a header fits but the frame does not (a PAD record).
    "exact_end", "tiny_rest", "pad_record"])
def test_wrap_and_full_edges(shm_path, first):
    c = Call(shm_path, tracks=1)
    try:
        m = RecRingModel(UP_BYTES, drop_oldest=True)
        fill = {"exact_end": UP_BYTES - rec_size(640), "tiny_rest": UP_BYTES - 16,
                "pad_record": UP_BYTES - 64}[first]
        sizes = fill_sizes(fill) + [640, 640]
        n_big = len(sizes)
        tag = 0
        for size in sizes:
            tag += 1
            d = payload(tag, size)
            c.ms.write(0, d, tag)
            m.write((tag, d), size)
        # The ring is (nearly) full: keep writing without reading, then read all.
        for _ in range(3 * n_big):
            tag += 1
            d = payload(tag, 1000)
            c.ms.write(0, d, tag)
            m.write((tag, d), 1000)
        recs = []
        while True:
            got = c.drain()
            if not got:
                break
            recs += got
        want = m.take(len(m))
        assert [(r[3], r[4], r[5]) for r in recs] == [(s, ts, d) for s, (ts, d) in want]
        assert c.pool.counters(c.idx)["up_in_dropped"] == m.dropped > 0
        assert recs[-1][3] == tag - 1  # the newest frame is there
    finally:
        c.pool.close()


# Byte ring (TTS down) -------------------------------------------------------

tts_ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.one_of(st.integers(0, 4000), st.integers(0, DOWN_BYTES + 2))),
    st.tuples(st.just("read"), st.one_of(st.sampled_from([160, 320, 960]), st.integers(0, 6000)),
              st.integers(1, 30)),
    st.tuples(st.just("clear"))), max_size=40)


@SETTINGS
@given(ops=tts_ops)
def test_tts_byte_ring_round_trip(ops):
    """write_tts never overwrites (returns what fit, whole samples), read_tts
    hands the bytes out in order and zero-pads a short frame, counting an
    underrun; clear_tts drops what is queued; tts_position follows."""
    c = Call(pool_path())
    try:
        fifo = bytearray()
        head = underruns = 0
        tag = 0
        for op in ops:
            if op[0] == "write":
                tag += 1
                data = payload(tag, op[1])
                n = c.pool.write_tts(c.idx, c.gen, data)
                want = min(len(data), DOWN_BYTES - len(fifo)) & ~1
                assert n == want
                fifo += data[:n]
            elif op[0] == "read":
                _, samples, repeat = op
                for _ in range(repeat):
                    got, frame = c.ms.read_tts(samples)
                    n = min(len(fifo), 2 * samples) & ~1
                    assert got == n // 2
                    assert len(frame) == 2 * samples
                    assert frame == bytes(fifo[:n]) + bytes(2 * samples - n)
                    del fifo[:n]
                    head += n
                    underruns += 0 < n < 2 * samples
            else:
                assert c.pool.clear_tts(c.idx, c.gen) == len(fifo)
                head += len(fifo)
                fifo.clear()
            assert c.pool.tts_position(c.idx) == (head, len(fifo))
        event(f"underruns: {underruns > 0}")
        event(f"wrapped: {head > DOWN_BYTES}")
        assert c.pool.counters(c.idx)["down_underruns"] == underruns
    finally:
        c.close()


# Control rings ----------------------------------------------------------------

ctl_sizes = st.one_of(st.integers(0, CTL_MAX), st.sampled_from([0, 1, 7, 8, 9, CTL_MAX - 1, CTL_MAX]))
ctl_ops = st.lists(st.one_of(
    st.tuples(st.just("post"), st.sampled_from([_ring.CTL_PAYLOAD, _ring.CTL_DTMF]), ctl_sizes,
              st.integers(1, 8)),
    st.tuples(st.just("send"), st.sampled_from([_ring.CTL_HANGUP, _ring.CTL_TRANSFER,
                                                _ring.CTL_EVENT, _ring.CTL_MARK,
                                                _ring.CTL_ERROR]), ctl_sizes, st.integers(1, 8)),
    st.tuples(st.just("too_big"), st.integers(CTL_MAX + 1, CTL_MAX + 64)),
    st.tuples(st.just("drain")),
    st.tuples(st.just("take"), st.integers(1, 10))), max_size=30)


@SETTINGS
@given(ops=ctl_ops)
def test_control_rings_round_trip(layout, ops):
    CTL_BYTES = layout["SS_CTL_BYTES"]
    """Messages up to CTL_MSG_MAX both ways arrive whole and in order; larger
    raise MessageTooLarge; a full ring raises RingFull, loses nothing already
    queued and counts the refusal."""
    c = Call(pool_path())
    try:
        up = RecRingModel(CTL_BYTES, drop_oldest=False)    # ctl_in: module -> daemon
        down = RecRingModel(CTL_BYTES, drop_oldest=False)  # ctl_out: daemon -> module
        too_big_in = too_big_out = 0
        tag = 0
        for op in ops + [("drain",), ("take", 10 ** 6)]:
            if op[0] == "post":
                _, typ, size, count = op
                for _ in range(count):
                    tag += 1
                    data = payload(tag, size)
                    if up.write((typ, data), size):
                        c.ms.post(typ, data)
                    else:
                        with pytest.raises(RingFull):
                            c.ms.post(typ, data)
            elif op[0] == "send":
                _, typ, size, count = op
                for _ in range(count):
                    tag += 1
                    data = payload(tag, size)
                    if down.write((typ, data), size):
                        c.pool.post_control(c.idx, c.gen, typ, data)
                    else:
                        with pytest.raises(RingFull):
                            c.pool.post_control(c.idx, c.gen, typ, data)
            elif op[0] == "too_big":
                with pytest.raises(MessageTooLarge):
                    c.ms.post(_ring.CTL_PAYLOAD, bytes(op[1]))
                with pytest.raises(MessageTooLarge):
                    c.pool.post_control(c.idx, c.gen, _ring.CTL_EVENT, bytes(op[1]))
                too_big_in += 1
                too_big_out += 1
            elif op[0] == "drain":
                got = []
                while True:
                    recs = c.drain()
                    if not recs:
                        break
                    got += [(r[3], (r[1], r[5])) for r in recs]
                assert got == up.take(len(up))
            else:
                for _ in range(op[1]):
                    m = c.ms.take()
                    want = down.take(1)
                    assert m == (want[0][1] if want else None)
                    if m is None:
                        break
        cnt = c.pool.counters(c.idx)
        event(f"full: {up.rejected + down.rejected > 0}")
        event(f"wrapped: {max(up.tail, down.tail) > CTL_BYTES}")
        assert cnt["ctl_in_rejected"] == up.rejected + too_big_in
        assert cnt["ctl_out_rejected"] == down.rejected + too_big_out
    finally:
        c.close()


def test_control_ring_full(shm_path, layout):
    CTL_BYTES = layout["SS_CTL_BYTES"]
    """Fill ctl_out until RingFull: exactly what the ring holds is accepted,
    every refusal is counted, and after the module takes one message there is
    room again."""
    c = Call(shm_path)
    try:
        size = 1000
        accepted = 0
        while True:
            try:
                c.pool.post_control(c.idx, c.gen, _ring.CTL_EVENT, payload(accepted, size))
            except RingFull:
                break
            accepted += 1
        assert accepted == CTL_BYTES // rec_size(size)
        for i in range(3):
            with pytest.raises(RingFull):
                c.pool.post_control(c.idx, c.gen, _ring.CTL_MARK, b"m")
        assert c.pool.counters(c.idx)["ctl_out_rejected"] == 4
        assert c.ms.take() == (_ring.CTL_EVENT, payload(0, size))
        c.pool.post_control(c.idx, c.gen, _ring.CTL_MARK, b"after")
        for i in range(1, accepted):
            assert c.ms.take() == (_ring.CTL_EVENT, payload(i, size))
        assert c.ms.take() == (_ring.CTL_MARK, b"after")
        assert c.ms.take() is None
        # The same on ctl_in, the module's side.
        n = 0
        while True:
            try:
                c.ms.post(_ring.CTL_PAYLOAD, payload(n, CTL_MAX))
            except RingFull:
                break
            n += 1
        assert n == CTL_BYTES // rec_size(CTL_MAX)
        assert c.pool.counters(c.idx)["ctl_in_rejected"] == 1
        recs = c.drain()
        assert [(r[1], r[3], r[5]) for r in recs] == [
            (_ring.CTL_PAYLOAD, i, payload(i, CTL_MAX)) for i in range(n)]
    finally:
        c.pool.close()


def test_empty_control_message_to_module(shm_path):
    c = Call(shm_path)
    try:
        c.pool.post_control(c.idx, c.gen, _ring.CTL_HANGUP, b"")
        c.pool.post_control(c.idx, c.gen, _ring.CTL_MARK, b"m1")
        assert c.ms.take() == (_ring.CTL_HANGUP, b"")
        assert c.ms.take() == (_ring.CTL_MARK, b"m1")
    finally:
        c.pool.close()


def test_empty_control_message_to_daemon(shm_path):
    c = Call(shm_path)
    try:
        c.ms.post(_ring.CTL_PAYLOAD, b"")
        c.ms.post(_ring.CTL_DTMF, b"")
        assert [(r[1], r[3], r[5]) for r in c.drain()] == [
            (_ring.CTL_PAYLOAD, 0, b""), (_ring.CTL_DTMF, 1, b"")]
    finally:
        c.pool.close()
