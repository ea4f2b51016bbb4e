"""Playout under the bot's control, over a real pool (the module side through
ModuleStream, csrc/ss_stream.c): any Audio length, overflow told, pause and
continue, drained and cleared with what was heard."""
import numpy as np
import pytest

from smartstream import _ring
from smartstream.playout import Playout

RATE = 16000
SPF = RATE // 50          # samples in 20 ms
FRAME = SPF * 2


@pytest.fixture
def slot(pool):
    daemon = _ring.Pool.open(pool, 2)
    module = _ring.ModuleStream(_ring.Pool.attach(pool), "call", "127.0.0.1:1", RATE)
    daemon.watch(module.slot, module.generation)
    yield daemon, module
    daemon.close()


def playout(slot, **kw):
    daemon, module = slot
    return Playout(daemon, module.slot, module.generation, RATE,
                   kw.get("prebuffer_ms", 60), kw.get("max_queue_ms", 10000))


def noise(n: int, seed: int = 3) -> bytes:
    pcm = np.random.default_rng(seed).integers(-30000, 30000, n, dtype="<i2")
    pcm[pcm == 0] = 1
    return pcm.tobytes()


def play_all(p, module, frames: int) -> bytes:
    """frames 20 ms module reads, a tick before each: what the caller heard."""
    heard = bytearray()
    for _ in range(frames):
        p.tick(0)
        got, pcm = module.read_tts(SPF)
        heard += pcm if got else bytes(FRAME)
    return bytes(heard)


def splits(data: bytes, sizes) -> list[bytes]:
    out, at, i = [], 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[at:at + n])
        at, i = at + n, i + 1
    return out


@pytest.mark.parametrize("sizes", [[1], [3], [161], [8191], "random"])
def test_audio_of_any_length_plays_bit_exact(slot, sizes):
    daemon, module = slot
    p = playout(slot)
    tts = noise(RATE // 2)   # 0.5 s
    if sizes == "random":
        sizes = list(np.random.default_rng(11).integers(0, 700, 4000))
    for chunk in splits(tts, [int(n) for n in sizes]):
        assert p.add_audio(chunk, RATE) is None
    heard = play_all(p, module, 30)
    assert heard[:len(tts)] == tts and not any(heard[len(tts):])
    assert p.odd_bytes_dropped == 0


def test_odd_byte_is_dropped_and_counted_on_a_rate_change_or_clear(slot):
    daemon, module = slot
    p = playout(slot)
    p.add_audio(b"\x01\x02\x03", RATE)       # 0x03 waits for its pair
    p.add_audio(bytes(96), 48000)            # another rate: 0x03 is dropped
    assert p.odd_bytes_dropped == 1
    p.add_audio(b"\x05", RATE)
    p.clear()
    assert p.odd_bytes_dropped == 2
    more = b"\x07\x08" + noise(SPF * 3)
    p.add_audio(more, RATE)                  # nothing stale paired with it
    assert play_all(p, module, 5)[:len(more)] == more


def test_overflow_tells_what_was_dropped_and_plays_the_rest(slot):
    daemon, module = slot
    p = playout(slot, max_queue_ms=100)
    a, b = noise(RATE // 20, 1), noise(RATE // 10, 2)      # 50 ms, 100 ms
    assert p.add_audio(a, RATE) is None
    p.add_mark("after-a")
    dropped = p.add_audio(b, RATE)
    assert dropped == (50, 100, "after-a")                 # the second half of b, from 100 ms on
    heard = play_all(p, module, 10)
    assert heard[:len(a) + len(b) // 2] == a + b[:len(b) // 2]
    assert not any(heard[len(a) + len(b) // 2:])


def test_pause_keeps_queue_and_position_and_continue_resumes_exactly(slot):
    daemon, module = slot
    p = playout(slot)
    tts = noise(RATE // 2)
    p.add_audio(tts, RATE)
    heard = play_all(p, module, 5)
    p.pause(True)
    paused = play_all(p, module, 10)
    assert not any(paused) and daemon.tts_position(module.slot)[1] > 0   # the lead waits in the ring
    assert p.waiting_ms() == 500 - 5 * 20
    assert not p.take_drained()
    p.pause(False)
    heard += play_all(p, module, 25)
    assert heard[:len(tts)] == tts and not any(heard[len(tts):])


def test_drained_once_the_last_sample_is_taken_with_the_last_mark(slot):
    daemon, module = slot
    p = playout(slot)
    p.add_audio(noise(SPF * 5), RATE)   # 100 ms
    p.add_mark("m")
    for _ in range(5):
        p.tick(0)
        assert p.take_drained() is None
        module.read_tts(SPF)
    assert p.tick(0) == ["m"]
    assert p.take_drained() == (100, "m")
    assert p.take_drained() is None and not p.busy
    p.add_audio(noise(SPF * 3), RATE)
    play_all(p, module, 3)
    p.tick(0)
    assert p.take_drained() == (60, "")   # since the last drain; no mark this time


def test_clear_says_exactly_how_much_of_the_utterance_was_heard(slot):
    daemon, module = slot
    p = playout(slot)
    p.add_audio(noise(SPF * 50), RATE)   # 1 s
    p.add_mark("end")
    play_all(p, module, 7)
    assert p.clear() == (1000 - 140, 140, ["end"])
    assert module.read_tts(SPF)[0] == 0
    assert p.played_ms() == 140 and p.waiting_ms() == 0


def test_clear_while_paused_empties_the_queue_and_stays_paused(slot):
    daemon, module = slot
    p = playout(slot)
    p.add_audio(noise(SPF * 20, 1), RATE)
    play_all(p, module, 2)
    p.pause(True)
    assert p.clear().heard_ms == 40 and p.waiting_ms() == 0
    after = noise(SPF * 5, 2)
    p.add_audio(after, RATE)
    assert not any(play_all(p, module, 5)) and p.paused and daemon.tts_paused(module.slot)
    p.pause(False)
    heard = play_all(p, module, 8)
    assert heard[:len(after)] == after and not any(heard[len(after):])
