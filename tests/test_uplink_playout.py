"""Uplink's resume window and Playout's pacing, marks and Clear, over a real
pool: the module side is driven through ModuleStream (csrc/ss_stream.c)."""
import numpy as np
import pytest

from smartstream import _ring
from smartstream.playout import Playout
from smartstream._uplink import Uplink


RATE = 16000
FRAME = RATE // 50 * 2   # bytes in 20 ms


@pytest.fixture
def slot(pool):
    path = pool
    daemon = _ring.Pool.open(path, 2)
    module = _ring.ModuleStream(_ring.Pool.attach(path), "call", "127.0.0.1:1", RATE)
    daemon.watch(module.slot, module.generation)
    yield daemon, module
    daemon.close()


def frame(i):
    return bytes([i % 256]) * FRAME


def test_window_keeps_the_last_bound_and_counts_drops_while_down():
    up = Uplink(RATE, RATE, [_ring.TRACK_IN], 100)   # 5 frames
    up.live = True
    for i in range(7):
        assert up.push(_ring.TRACK_IN, i, 1000 + i, frame(i)) == frame(i)
    assert up.dropped == 0                     # trimmed while live: they were sent
    up.live = False
    for i in range(7, 10):
        up.push(_ring.TRACK_IN, i, 1000 + i, frame(i))
    assert up.dropped == 3                     # frames 2..4 left while the stream was down
    assert up.first_seq(_ring.TRACK_IN) == 5
    assert up.replay() == [(_ring.TRACK_IN, i, 1000 + i, frame(i)) for i in range(5, 10)]
    assert up.replay() == up.replay()          # replay does not consume


def test_window_wraps_and_keeps_tracks_apart():
    up = Uplink(RATE, RATE, [_ring.TRACK_IN, _ring.TRACK_OUT], 2000)
    for i in range(5000):
        up.push(i % 2, i // 2, i, frame(i)[: 2 + 2 * (i % 300)])
    frames = up.replay()
    held = sum(len(f[3]) for f in frames)
    assert held <= 2 * 2000 * RATE * 2 // 1000 < held + FRAME
    assert [f[1] for f in frames if f[0] == 0] == list(range(frames[0][1], 2500))
    assert up.first_seq(_ring.TRACK_OUT) == [f[1] for f in frames if f[0] == 1][0]


def test_window_resamples_when_asked():
    up = Uplink(8000, 16000, [_ring.TRACK_IN], 2000)
    outs = [up.push(_ring.TRACK_IN, i, 0, bytes(320)) for i in range(50)]
    assert all(len(o) == 640 for o in outs[1:])   # one frame in, one frame out
    assert 50 * 640 - 160 <= sum(map(len, outs)) <= 50 * 640


def test_playout_tops_up_only_the_lead_and_marks_wait_for_playout(slot):
    daemon, module = slot
    p = Playout(daemon, module.slot, module.generation, RATE, prebuffer_ms=60, max_queue_ms=10000)
    audio = np.arange(RATE, dtype="<i2").tobytes()          # 1 s, every sample distinct
    p.add_audio(audio, RATE)
    p.add_mark("after-1s")
    assert p.tick(0) == []
    assert daemon.tts_position(module.slot)[1] == 3 * FRAME  # 60 ms lead, not 1 s
    heard = bytearray()
    for _ in range(49):
        got, pcm = module.read_tts(FRAME // 2)
        heard += pcm
        assert p.tick(0) == []
    got, pcm = module.read_tts(FRAME // 2)
    heard += pcm
    assert p.tick(0) == ["after-1s"]
    assert bytes(heard) == audio


def test_prebuffer_waits_for_enough_audio_or_time(slot):
    daemon, module = slot
    p = Playout(daemon, module.slot, module.generation, RATE, prebuffer_ms=60, max_queue_ms=10000)
    p.add_audio(bytes(FRAME), RATE)          # 20 ms: less than the prebuffer
    p.tick(p._pending_since + 10_000_000)    # 10 ms later: still waiting
    assert daemon.tts_position(module.slot)[1] == 0
    p.tick(p._pending_since + 60_000_000)    # prebuffer time passed: play what there is
    assert daemon.tts_position(module.slot)[1] == FRAME


def test_clear_drops_queue_and_ring_and_returns_pending_marks(slot):
    daemon, module = slot
    p = Playout(daemon, module.slot, module.generation, RATE, prebuffer_ms=60, max_queue_ms=10000)
    p.add_audio(bytes([1]) * FRAME * 10, RATE)
    p.add_mark("a")
    p.add_mark("b")
    p.tick(0)
    dropped_ms, cleared = p.clear()
    assert (dropped_ms, cleared) == (200, ["a", "b"])
    assert module.read_tts(FRAME // 2)[0] == 0
    p.add_audio(bytes([2]) * FRAME * 3, RATE)
    p.add_mark("c")
    p.tick(0)
    for _ in range(3):
        assert module.read_tts(FRAME // 2) == (FRAME // 2, bytes([2]) * FRAME)
    assert p.tick(0) == ["c"]


def test_queue_over_the_bound_is_dropped_and_counted(slot):
    daemon, module = slot
    p = Playout(daemon, module.slot, module.generation, RATE, prebuffer_ms=60, max_queue_ms=100)
    p.add_audio(bytes(FRAME * 8), RATE)
    assert p.queued_bytes == FRAME * 5 and p.dropped_bytes == FRAME * 3


def test_ai_audio_at_another_rate_is_converted(slot):
    daemon, module = slot
    p = Playout(daemon, module.slot, module.generation, RATE, prebuffer_ms=60, max_queue_ms=10000)
    p.add_audio(bytes(48000 * 2), 48000)
    assert abs(p.queued_bytes - RATE * 2) <= FRAME
