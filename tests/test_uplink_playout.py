"""Uplink's resume window and Playout's pacing, marks and Clear, over a real
pool: the module side is driven through ModuleStream (csrc/ss_stream.c)."""
import numpy as np
import pytest

from smartstream import _ring
from smartstream.playout import Playout
from smartstream._uplink import Uplink
from smartstream.v1 import smartstream_pb2 as pb


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


IN = _ring.TRACK_IN


def test_window_keeps_the_last_bound_and_announces_what_it_lost_while_down():
    up = Uplink(RATE, RATE, [IN], 100)   # 5 frames
    for i in range(7):
        assert up.push(IN, i, 1000 + i, frame(i), sent=True) == (frame(i), 0)
    assert up.dropped == 0                     # trimmed after they were sent
    for i in range(7, 10):
        up.push(IN, i, 1000 + i, frame(i))
    assert up.dropped == 0                     # 2..4 pushed out, but they had been sent
    items, first = up.resume()
    # Not acking: the whole window again (5, 6 replayed), 7..9 for the first time.
    assert items == [("audio", IN, i, 1000 + i, frame(i)) for i in range(5, 10)]
    assert first[IN] == 5 and up.stream_replayed == 2 and up.stream_lost == 0


def test_frames_evicted_unsent_become_one_gap_before_the_window():
    up = Uplink(RATE, RATE, [IN], 100)
    for i in range(12):
        up.push(IN, i, i, frame(i))
    assert up.dropped == 7
    items, first = up.resume()
    assert items[0] == ("gap", IN, 0, 7, pb.Gap.REASON_RESUME_WINDOW)
    assert [it[2] for it in items[1:]] == list(range(7, 12))
    assert first[IN] == 0 and up.stream_lost == 7


def test_ring_overrun_is_a_gap_before_the_next_frame_and_old_frames_are_refused():
    up = Uplink(RATE, RATE, [IN], 1000)
    up.push(IN, 0, 0, frame(0), sent=True)
    assert up.push(IN, 4, 4, frame(4), sent=True)[1] == 3   # 1..3 lost by the ring
    assert up.push(IN, 2, 2, frame(2)) is None             # older than one taken
    items, first = up.resume()
    assert items == [("audio", IN, 0, 0, frame(0)), ("gap", IN, 1, 3, pb.Gap.REASON_RING_OVERRUN),
                     ("audio", IN, 4, 4, frame(4))]


def test_an_acking_server_gets_nothing_twice_and_cannot_ack_ahead():
    up = Uplink(RATE, RATE, [IN], 1000)
    for i in range(10):
        up.push(IN, i, i, frame(i), sent=True)
    assert not up.ack(IN, 10)                  # never sent: the caller makes it fatal
    assert up.ack(IN, 6) and up.acking
    for i in range(10, 12):
        up.push(IN, i, i, frame(i))
    items, first = up.resume()
    assert [it[2] for it in items] == list(range(7, 12)) and first[IN] == 7
    assert up.held_frames() == 5               # 0..6 trimmed by the ack


def test_an_acking_server_is_told_of_unacknowledged_frames_it_can_no_longer_get():
    up = Uplink(RATE, RATE, [IN], 100)
    for i in range(4):
        up.push(IN, i, i, frame(i), sent=True)
    up.ack(IN, 1)
    for i in range(4, 10):                     # stream down: 2, 3 (sent, unacked) and 4 pushed out
        up.push(IN, i, i, frame(i))
    items, first = up.resume()
    assert items[0] == ("gap", IN, 2, 3, pb.Gap.REASON_RESUME_WINDOW)
    assert [it[2] for it in items[1:]] == list(range(5, 10)) and first[IN] == 2


def test_an_acking_server_gone_silent_on_a_live_stream_is_told_what_it_missed():
    # The stream looks up (a host gone quiet, keepalive not yet expired): frames
    # go out, no Ack comes, the window lets them go. For an acking server only an
    # Ack makes a frame delivered, so the next stream starts with their Gap.
    up = Uplink(RATE, RATE, [IN], 100)      # 5 frames
    for i in range(3):
        up.push(IN, i, i, frame(i), sent=True)
    up.ack(IN, 1)
    for i in range(3, 12):
        up.push(IN, i, i, frame(i), sent=True)
    assert up.dropped == 5                   # 2..6: sent, never acknowledged
    items, first = up.resume()
    assert items[0] == ("gap", IN, 2, 5, pb.Gap.REASON_RESUME_WINDOW)
    assert [it[2] for it in items[1:]] == list(range(7, 12)) and first[IN] == 2
    assert up.stream_lost == 5


def test_a_late_ack_takes_back_what_the_window_counted_lost():
    up = Uplink(RATE, RATE, [IN], 100)
    up.push(IN, 0, 0, frame(0), sent=True)
    up.ack(IN, 0)
    for i in range(1, 12):
        up.push(IN, i, i, frame(i), sent=True)
    assert up.dropped == 6                   # 1..6 let go unacknowledged
    assert up.ack(IN, 4)                     # 1..4 arrived after all
    assert up.dropped == 2
    items, first = up.resume()
    assert items[0] == ("gap", IN, 5, 2, pb.Gap.REASON_RESUME_WINDOW) and first[IN] == 5
    assert [it[2] for it in items[1:]] == list(range(7, 12))


def test_window_wraps_and_keeps_tracks_apart():
    up = Uplink(RATE, RATE, [_ring.TRACK_IN, _ring.TRACK_OUT], 2000)
    for i in range(5000):
        up.push(i % 2, i // 2, i, frame(i)[: 2 + 2 * (i % 300)], sent=True)
    frames, first = up.resume()
    held = sum(len(f[4]) for f in frames)
    assert held <= 2 * 2000 * RATE * 2 // 1000 < held + FRAME
    assert [f[2] for f in frames if f[1] == 0] == list(range(frames[0][2], 2500))
    assert first[_ring.TRACK_OUT] == [f[2] for f in frames if f[1] == 1][0]


def test_window_resamples_when_asked():
    up = Uplink(8000, 16000, [_ring.TRACK_IN], 2000)
    outs = [up.push(_ring.TRACK_IN, i, 0, bytes(320))[0] for i in range(50)]
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
    assert p.clear() == (200, 0, ["a", "b"])   # dropped, heard, marks: nothing played yet
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
