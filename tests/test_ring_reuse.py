"""Slot reuse: the generation tells calls apart. A daemon still holding the
old generation of a slot must never take the next call's frames for its own
call, nor send TTS or control messages into it."""
import struct
import subprocess
import sys
import textwrap

import pytest

from smartstream import _ring
from smartstream._ring import Batch, ModuleStream, Pool, SlotError


def frame(tag, n=160):
    return struct.pack("<I", tag) * (n // 2)


def records_of(pool, batch, slot):
    pool.drain(batch)
    return [r for r in batch.records() if r[0] == slot]


def test_old_generation_gets_nothing_of_the_next_call(shm_path):
    daemon = Pool.open(shm_path, 1)
    batch = Batch()
    a = ModuleStream(daemon, "call-a", "h:1", 8000, tracks=3)
    idx, g1 = a.slot, a.generation
    daemon.watch(idx, g1)
    for i in range(5):
        a.write(_ring.TRACK_IN, frame(0xA0 + i))
    assert [r[5] for r in records_of(daemon, batch, idx)] == [frame(0xA0 + i) for i in range(5)]
    a.write(_ring.TRACK_IN, frame(0xAF))  # never drained: left behind in the ring
    a.post(_ring.CTL_PAYLOAD, b'{"call":"a"}')
    a.close()
    # Someone else (another daemon process, after StreamEnd) frees the slot,
    # and the next call takes it, while this daemon still watches call a.
    other = Pool.attach(shm_path)
    other.free_slot(idx, g1)
    b = ModuleStream(daemon, "call-b", "h:1", 8000, tracks=3)
    assert (b.slot, b.generation) == (idx, g1 + 1)
    for i in range(4):
        b.write(_ring.TRACK_IN, frame(0xB0 + i))
        b.write(_ring.TRACK_OUT, frame(0xB8 + i))
    b.post(_ring.CTL_DTMF, b"5\x64\x00\x00\x00")
    # Call a's module stream, still around, cannot write into call b's rings.
    with pytest.raises(SlotError):
        a.write(_ring.TRACK_IN, frame(0xEE))
    with pytest.raises(SlotError):
        a.write(_ring.TRACK_OUT, frame(0xEF))

    for _ in range(3):  # and it stays so
        assert records_of(daemon, batch, idx) == []
        assert batch.errors == [(idx, _ring.E_STALE, 0)]

    # Nothing goes from the old call's daemon into the new call.
    with pytest.raises(SlotError, match="changed hands"):
        daemon.write_tts(idx, g1, b"\x01\x00" * 100)
    with pytest.raises(SlotError, match="changed hands"):
        daemon.post_control(idx, g1, _ring.CTL_HANGUP, b"NORMAL_CLEARING")
    with pytest.raises(SlotError, match="changed hands"):
        daemon.clear_tts(idx, g1)
    with pytest.raises(SlotError):
        daemon.free_slot(idx, g1)
    assert b.read_tts(80) == (0, bytes(160))
    assert b.take() is None
    assert daemon.tts_position(idx) == (0, 0)
    assert daemon.slot_info(idx)["uuid"] == "call-b"
    assert daemon.slot_info(idx)["state"] == _ring.SLOT_ACTIVE

    # Watching the new generation gives exactly call b, from its first frame.
    daemon.watch(idx, b.generation)
    recs = records_of(daemon, batch, idx)
    assert batch.errors == []
    assert [(r[1], r[2], r[3], r[5]) for r in recs] == (
        [(_ring.REC_AUDIO, 0, i, frame(0xB0 + i)) for i in range(4)]
        + [(_ring.REC_AUDIO, 1, i, frame(0xB8 + i)) for i in range(4)]
        + [(_ring.CTL_DTMF, 0, 0, b"5\x64\x00\x00\x00")])
    daemon.post_control(idx, b.generation, _ring.CTL_MARK, b"m")
    assert b.take() == (_ring.CTL_MARK, b"m")
    # The next turnover: b's daemon holding g2 cannot free or feed call c.
    b.close()
    other.free_slot(idx, b.generation)
    c = ModuleStream(daemon, "call-c", "h:1", 8000)
    with pytest.raises(SlotError):
        daemon.free_slot(idx, b.generation)
    with pytest.raises(SlotError):
        daemon.write_tts(idx, b.generation, b"\x01\x00")
    assert records_of(daemon, batch, idx) == []
    assert batch.errors == [(idx, _ring.E_STALE, 0)]
    info = daemon.slot_info(idx)
    assert (info["uuid"], info["generation"], info["state"]) == (
        "call-c", c.generation, _ring.SLOT_ACTIVE)
    other.close()
    daemon.close()


def test_free_slot_rules(shm_path):
    daemon = Pool.open(shm_path, 2)
    m = ModuleStream(daemon, "x", "h:1")
    with pytest.raises(SlotError, match="wrong state"):
        daemon.free_slot(m.slot, m.generation)  # still ACTIVE
    m.close()
    with pytest.raises(SlotError, match="another call"):
        daemon.free_slot(m.slot, m.generation + 1)
    daemon.free_slot(m.slot, m.generation)
    with pytest.raises(SlotError, match="wrong state"):
        daemon.free_slot(m.slot, m.generation)  # already free
    assert daemon.slot_info(m.slot)["state"] == _ring.SLOT_FREE
    m.close()  # closing twice is a no-op
    daemon.close()


# A separate process recycles slot 0 of a one-slot pool as fast as it can:
# open a call, write frames that carry the call's generation, close, free.
CHURN = textwrap.dedent("""
    import random, struct, sys, time
    from smartstream._ring import ModuleStream, Pool
    pool = Pool.attach(sys.argv[1])
    rnd = random.Random(int(sys.argv[3]))
    for n in range(int(sys.argv[2])):
        m = ModuleStream(pool, f"churn-{n}", "h:1", 8000, tracks=3)
        for i in range(rnd.randrange(0, 60)):
            m.write(i % 2, struct.pack("<II", m.generation, i // 2) * rnd.randrange(1, 200))
            if rnd.random() < 0.1:
                time.sleep(0.0002)  # let the reader catch the call live now and then
        m.post(16, struct.pack("<I", m.generation))
        m.close()
        pool.free_slot(m.slot, m.generation)
    print("done", flush=True)
""")


@pytest.mark.parametrize("seed", [1, 2])
def test_reader_never_mixes_calls_under_churn(shm_path, seed):
    """While another process recycles the slot, a reader that watches
    whatever generation it last saw (often an old one) only ever receives
    records that carry the generation it watches, each at most once, in order."""
    daemon = Pool.open(shm_path, 1)
    batch = Batch()
    calls = 300
    churn = subprocess.Popen([sys.executable, "-c", CHURN, shm_path, str(calls), str(seed)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        watched = 0
        seen = {}      # generation -> {track: last seq}
        got = stale = 0
        while True:
            daemon.heartbeat()
            finished = churn.poll() is not None
            for idx, gen, st in daemon.scan():
                if gen and gen != watched and st != _ring.SLOT_FREE:
                    watched = gen
                    daemon.watch(0, gen)
            if not watched:
                continue
            daemon.drain(batch)
            stale += sum(e[1] == _ring.E_STALE for e in batch.errors)
            assert all(e[1] == _ring.E_STALE for e in batch.errors), batch.errors
            for slot, typ, track, seq, ts, data in batch.records():
                gen = struct.unpack_from("<I", data)[0]
                assert gen == watched, (gen, watched)
                key = track if typ == _ring.REC_AUDIO else typ
                last = seen.setdefault(gen, {}).get(key, -1)
                assert seq > last
                seen[gen][key] = seq
                if typ == _ring.REC_AUDIO:
                    assert data == struct.pack("<II", gen, seq) * (len(data) // 8)
                got += 1
            if finished:
                break
        out, err = churn.communicate(timeout=30)
        assert churn.returncode == 0, err
        assert out.strip() == "done"
        info = daemon.slot_info(0)
        assert (info["generation"], info["state"]) == (calls, _ring.SLOT_FREE)
        assert got > 0
    finally:
        if churn.poll() is None:
            churn.kill()
            churn.wait()
        daemon.close()
