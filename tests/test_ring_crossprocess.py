"""The rings across real processes: the C media simulator (csrc/build/mediasim,
the library mod_ai_stream uses) writes calls into a pool that a separate
Python process, the daemon side of _ring, creates and drains every ~20 ms.

The daemon process is this file run as a script (see daemon_main): it takes
its instructions as one JSON argument, prints "ready" once the pool exists
and heartbeats, and pickles what it saw to a file when every call it
expected has been closed by mediasim. The checks are all made here.

Caller audio is mediasim's --source pattern (csrc/mediasim.c): sample k of
frame s of call i is (i * 7919 + s * 131 + k * 17) & 0x7fff, and s is the
record's seq in its ring.
"""
import array
import collections
import json
import os
import pickle
import signal
import subprocess
import sys
import time


from smartstream import _ring
from smartstream._ring import Batch, Pool

TIMEOUT = 60  # seconds any one process may take before the test gives up on it


# --- the daemon process --------------------------------------------------------

def tts_pcm(num, nbytes):
    """TTS the daemon queues for call num: never a zero sample, so where it
    starts in a recording shows."""
    return array.array("h", (1 + (num * 4099 + n * 7) % 30000 for n in range(nbytes // 2))).tobytes()


def daemon_main(cfg):
    pool = Pool.open(cfg["pool"], cfg["slots"])
    batch = Batch()
    watched = {}       # slot -> {"gen", "uuid", "state"}
    records = []       # (uuid, type, track, seq, ts_ns, payload)
    errors = []        # (uuid, code, bytes lost)
    hung_up = set()
    print("ready", flush=True)
    deadline = time.monotonic() + cfg["timeout"]
    timed_out = True
    while time.monotonic() < deadline:
        pool.heartbeat()
        for idx, gen, st in pool.scan():
            if idx in watched and watched[idx]["gen"] == gen:
                watched[idx]["state"] = st
            elif st in (_ring.SLOT_ACTIVE, _ring.SLOT_CLOSING) and idx not in watched:
                uuid = pool.slot_info(idx)["uuid"]
                watched[idx] = dict(gen=gen, uuid=uuid, state=st)
                pool.watch(idx, gen)
                num = int(uuid.rsplit("-", 1)[1])
                if cfg.get("tts_bytes"):
                    pcm = tts_pcm(num, cfg["tts_bytes"])
                    watched[idx]["tts_written"] = pool.write_tts(idx, gen, pcm)
                for to, typ, text in cfg.get("send", []):
                    if to == uuid:
                        pool.post_control(idx, gen, typ, text.encode())
        done = len(watched) == cfg["calls"] and all(
            w["state"] != _ring.SLOT_ACTIVE for w in watched.values())
        if not cfg.get("stall") or done:
            while pool.drain(batch):
                errors += [(watched[s]["uuid"], code, lost) for s, code, lost in batch.errors]
                for slot, typ, track, seq, ts, data in batch.records():
                    w = watched[slot]
                    records.append((w["uuid"], typ, track, seq, ts, data))
                    if typ == _ring.CTL_PAYLOAD and w["uuid"] in cfg.get("hangup", {}) \
                            and w["uuid"] not in hung_up:
                        pool.post_control(slot, w["gen"], _ring.CTL_HANGUP,
                                          cfg["hangup"][w["uuid"]].encode())
                        hung_up.add(w["uuid"])
            errors += [(watched[s]["uuid"], code, lost) for s, code, lost in batch.errors]
            first = cfg.get("hangup_rest_after")
            if first:  # once that call has ended, end every call that has outlived it
                counts = collections.Counter(r[0] for r in records if r[1] == _ring.REC_AUDIO)
                if any(w["uuid"] == first and w["state"] != _ring.SLOT_ACTIVE
                       for w in watched.values()):
                    for idx, w in watched.items():
                        if w["state"] == _ring.SLOT_ACTIVE and w["uuid"] not in hung_up \
                                and counts[w["uuid"]] > counts[first]:
                            pool.post_control(idx, w["gen"], _ring.CTL_HANGUP, b"NORMAL_CLEARING")
                            hung_up.add(w["uuid"])
            if cfg.get("hangup_when_played"):
                for idx, w in watched.items():
                    if w["state"] == _ring.SLOT_ACTIVE and w["uuid"] not in hung_up \
                            and pool.tts_position(idx) == (cfg["tts_bytes"], 0):
                        pool.post_control(idx, w["gen"], _ring.CTL_HANGUP, b"NORMAL_CLEARING")
                        hung_up.add(w["uuid"])
        if done:
            timed_out = False
            break
        time.sleep(0.02)
    calls = {}
    for idx, w in watched.items():
        calls[w["uuid"]] = dict(slot=idx, gen=w["gen"], counters=pool.counters(idx),
                                tts_position=pool.tts_position(idx),
                                tts_written=w.get("tts_written"))
        if w["state"] == _ring.SLOT_CLOSING:
            pool.free_slot(idx, w["gen"])
    pool.close()
    with open(cfg["out"], "wb") as f:
        pickle.dump(dict(records=records, errors=errors, calls=calls, timed_out=timed_out), f)


# --- helpers for the tests ------------------------------------------------------

def pattern(i, s, spf):
    base = i * 7919 + s * 131
    return array.array("h", ((base + 17 * k) & 0x7fff for k in range(spf))).tobytes()


def call_num(uuid):
    return int(uuid.rsplit("-", 1)[1])


def run(mediasim, shm_path, tmp_path, sim_args, calls, slots=None, terminate_sim=False, **cfg):
    """Start the daemon process, then mediasim; return (daemon's findings,
    mediasim's control lines, mediasim's summary)."""
    out = str(tmp_path / "daemon.pickle")
    cfg = dict(pool=shm_path, slots=slots or calls, calls=calls, out=out, timeout=TIMEOUT, **cfg)
    procs = []
    try:
        daemon = subprocess.Popen([sys.executable, os.path.abspath(__file__), json.dumps(cfg)],
                                  stdout=subprocess.PIPE, text=True)
        procs.append(daemon)
        assert daemon.stdout.readline().strip() == "ready"
        sim = subprocess.Popen([mediasim, "--pool", shm_path, "--source", "pattern",
                                "--calls", str(calls), "--wait-daemon", "10", *sim_args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(sim)
        assert daemon.wait(TIMEOUT + 10) == 0
        if terminate_sim:
            sim.send_signal(signal.SIGTERM)
        stdout, stderr = sim.communicate(timeout=TIMEOUT)
        assert sim.returncode == 0, stderr
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    with open(out, "rb") as f:
        found = pickle.load(f)
    assert not found["timed_out"], "the daemon never saw every call closed"
    lines = [json.loads(line) for line in stdout.splitlines()]
    summary = [x for x in lines if x.get("summary")]
    assert len(summary) == 1 and lines[-1] is summary[0]
    return found, lines[:-1], summary[0]


def audio_by_call(records, track=_ring.TRACK_IN):
    by = collections.defaultdict(list)
    for uuid, typ, trk, seq, ts, data in records:
        if typ == _ring.REC_AUDIO and trk == track:
            by[uuid].append((seq, ts, data))
    return by


def kept_after(frames, frame_bytes, cap):
    """How many of `frames` equal records a ring of cap bytes holds at the end,
    by the rules of csrc/ss_layout.h (24-byte header, 8-aligned, no wrapping)."""
    need = 24 + ((frame_bytes + 7) & ~7)
    head = tail = 0
    q = collections.deque()
    for _ in range(frames):
        rem = cap - tail % cap
        pad = rem if rem < need else 0
        while tail + pad + need - head > cap:
            span, real = q.popleft()
            head += span
        if pad:
            q.append((pad, False))
            tail += pad
        q.append((need, True))
        tail += need
    return sum(real for _, real in q)


# --- the tests --------------------------------------------------------------------

def test_uplink_reader_keeps_up(mediasim, shm_path, tmp_path):
    """4 calls, 3 s, both tracks: every frame arrives, in order, byte for byte."""
    calls, seconds, rate, ptime = 4, 3, 16000, 20
    found, ctl, summary = run(mediasim, shm_path, tmp_path, [
        "--seconds", str(seconds), "--rate", str(rate), "--ptime", str(ptime),
        "--tracks", "both", "--uuid-prefix", "up"], calls)
    frames = seconds * 1000 // ptime
    spf = rate * ptime // 1000
    assert found["errors"] == []
    assert ctl == []
    assert summary["calls"] == calls
    assert summary["frames_written"] == 2 * calls * frames
    assert summary["dropped"] == 0
    assert sorted(found["calls"]) == [f"up-{i:04d}" for i in range(calls)]
    for track in (_ring.TRACK_IN, _ring.TRACK_OUT):
        by = audio_by_call(found["records"], track)
        assert sorted(by) == sorted(found["calls"])
        for uuid, got in by.items():
            assert [s for s, _, _ in got] == list(range(frames)), uuid
            ts = [t for _, t, _ in got]
            assert ts == sorted(ts)
            for seq, _, data in got:
                want = pattern(call_num(uuid), seq, spf) if track == _ring.TRACK_IN \
                    else bytes(2 * spf)  # no TTS queued: the caller hears silence
                assert data == want, (uuid, track, seq)
    for c in found["calls"].values():
        assert c["counters"]["up_in_dropped"] == c["counters"]["up_out_dropped"] == 0
        assert c["counters"]["up_rejected"] == 0


def test_uplink_stalled_reader_loses_oldest(mediasim, shm_path, tmp_path):
    """The daemon does not drain until mediasim has closed its calls, having
    written more than a ring holds: the oldest frames are gone, exactly as
    many as `dropped` says; what is left is the newest, intact."""
    calls, seconds, rate, ptime = 2, 4, 48000, 20
    spf = rate * ptime // 1000
    frames = seconds * 1000 // ptime
    assert frames * (24 + 2 * spf) > 1.4 * _ring.up_bytes(rate)  # the test needs an overflow
    found, ctl, summary = run(mediasim, shm_path, tmp_path, [
        "--seconds", str(seconds), "--rate", str(rate), "--ptime", str(ptime),
        "--uuid-prefix", "stall"], calls, stall=True)
    assert found["errors"] == []
    by = audio_by_call(found["records"])
    assert sorted(by) == [f"stall-{i:04d}" for i in range(calls)]
    kept = kept_after(frames, 2 * spf, _ring.up_bytes(rate))
    total_dropped = 0
    for uuid, got in by.items():
        seqs = [s for s, _, _ in got]
        dropped = found["calls"][uuid]["counters"]["up_in_dropped"]
        missing = set(range(frames)) - set(seqs)
        assert len(missing) == dropped > 0
        # The newest frames, consecutive up to the last one written.
        assert seqs == list(range(frames - len(seqs), frames))
        assert len(seqs) == kept
        for seq, _, data in got:
            assert data == pattern(call_num(uuid), seq, spf), (uuid, seq)
        total_dropped += dropped
    assert summary["dropped"] == total_dropped
    assert summary["frames_written"] == calls * frames


def read_wav(path):
    import wave
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), w.readframes(w.getnframes())


def test_downlink_tts_is_what_the_caller_hears(mediasim, shm_path, tmp_path):
    """TTS queued by the daemon with write_tts is what mediasim plays: the
    recording (--record) holds it sample for sample after some silence, and
    the outbound track carries the same audio back up."""
    calls, rate, ptime = 2, 16000, 20
    spf = rate * ptime // 1000
    tts_bytes = _ring.down_bytes(rate) - spf  # the whole ring less half a frame: the last frame is short
    rec_dir = tmp_path / "rec"
    found, ctl, summary = run(mediasim, shm_path, tmp_path, [
        "--seconds", "0", "--rate", str(rate), "--ptime", str(ptime), "--tracks", "both",
        "--record", str(rec_dir), "--uuid-prefix", "tts"], calls,
        tts_bytes=tts_bytes, hangup_when_played=True, terminate_sim=True)
    assert found["errors"] == []
    assert [c["type"] for c in ctl] == ["hangup"] * calls
    assert summary["tts_frames"] == calls * -(-tts_bytes // (2 * spf))
    assert summary["tts_underruns"] == calls
    out_track = audio_by_call(found["records"], _ring.TRACK_OUT)
    for uuid, c in found["calls"].items():
        tts = tts_pcm(call_num(uuid), tts_bytes)
        assert c["tts_written"] == tts_bytes
        assert c["tts_position"] == (tts_bytes, 0)
        assert c["counters"]["down_underruns"] == 1
        wav_rate, heard = read_wav(rec_dir / f"{uuid}.wav")
        assert wav_rate == rate
        assert len(heard) % (2 * spf) == 0
        samples = array.array("h", heard)
        start = next(i for i, v in enumerate(samples) if v)
        assert start % spf == 0  # TTS starts on a frame
        played = heard[2 * start:2 * start + tts_bytes]
        assert played == tts
        assert heard[2 * start + tts_bytes:] == bytes(len(heard) - 2 * start - tts_bytes)
        # The outbound track is the same audio, frame by frame.
        got = out_track[uuid]
        assert [s for s, _, _ in got] == list(range(len(got)))
        assert b"".join(d for _, _, d in got) == heard


def test_control_both_ways(mediasim, shm_path, tmp_path):
    """--payload and --dtmf arrive through drain as CTL_PAYLOAD / CTL_DTMF;
    what the daemon posts comes out of mediasim as JSON lines, and a hangup
    ends that call (its frames stop, its slot closes) while the others run on
    (until the daemon hangs them up too, once they have outlived the first)."""
    calls, ptime = 3, 20
    payload = '{"customer":"Zoë","n":[1,2,3],"q":"say \\"hi\\""}'
    sends = [
        ["ctl-0001", _ring.CTL_EVENT, '{"name":"x","data":{"k":"v"}}'],
        ["ctl-0001", _ring.CTL_MARK, "mark-1"],
        ["ctl-0001", _ring.CTL_TRANSFER, "1000 XML default"],
        ["ctl-0002", _ring.CTL_ERROR, "bad \"thing\" \u00e9\n"],
    ]
    found, ctl, summary = run(mediasim, shm_path, tmp_path, [
        "--seconds", "0", "--ptime", str(ptime), "--payload", payload,
        "--dtmf", "12#*", "--uuid-prefix", "ctl"], calls, terminate_sim=True,
        send=sends, hangup={"ctl-0000": "USER_BUSY"}, hangup_rest_after="ctl-0000")
    assert found["errors"] == []
    by = collections.defaultdict(list)
    for uuid, typ, track, seq, ts, data in found["records"]:
        if typ != _ring.REC_AUDIO:
            by[uuid].append((typ, seq, data))
    dtmf = [(_ring.CTL_DTMF, 1 + n, d.encode() + (100).to_bytes(4, "little"))
            for n, d in enumerate("12#*")]
    for i in range(calls):
        assert by[f"ctl-{i:04d}"] == [(_ring.CTL_PAYLOAD, 0, payload.encode())] + dtmf
    names = {_ring.CTL_EVENT: "event", _ring.CTL_MARK: "mark", _ring.CTL_TRANSFER: "transfer",
             _ring.CTL_ERROR: "error"}
    want = [{"uuid": "ctl-0000", "type": "hangup", "data": "USER_BUSY"}] + [
        {"uuid": u, "type": names[t], "data": text} for u, t, text in sends] + [
        {"uuid": u, "type": "hangup", "data": "NORMAL_CLEARING"} for u in ("ctl-0001", "ctl-0002")]
    assert sorted(ctl, key=json.dumps) == sorted(want, key=json.dumps)
    # Per call, the messages come out in the order they were posted.
    for u in ("ctl-0001", "ctl-0002"):
        assert [x for x in ctl if x["uuid"] == u] == [x for x in want if x["uuid"] == u]
    frames = audio_by_call(found["records"])
    for uuid, got in frames.items():
        assert [s for s, _, _ in got] == list(range(len(got))), uuid
    first = len(frames["ctl-0000"])
    assert len(frames["ctl-0001"]) > first and len(frames["ctl-0002"]) > first
    assert summary["frames_written"] == sum(len(f) for f in frames.values())
    assert summary["calls"] == calls


def test_empty_hangup_ends_the_call(mediasim, shm_path, tmp_path):
    seconds, ptime = 3, 20
    found, ctl, summary = run(mediasim, shm_path, tmp_path, [
        "--seconds", str(seconds), "--ptime", str(ptime), "--payload", "{}",
        "--uuid-prefix", "empty"], 2, hangup={"empty-0000": ""})
    assert {"uuid": "empty-0000", "type": "hangup", "data": ""} in ctl
    frames = audio_by_call(found["records"])
    assert len(frames["empty-0000"]) < len(frames["empty-0001"]) == seconds * 1000 // ptime


def test_call_ending_without_daemon_waits_for_the_next(mediasim, shm_path):
    """The daemon goes away (heartbeat cleared) while calls run; they end; a
    new daemon re-attaches and finds them CLOSING with every frame still there."""
    calls, seconds, ptime = 2, 1, 20
    daemon = Pool.open(shm_path, calls)
    sim = subprocess.Popen([mediasim, "--pool", shm_path, "--source", "pattern", "--calls",
                            str(calls), "--seconds", str(seconds), "--ptime", str(ptime),
                            "--uuid-prefix", "orphan", "--wait-daemon", "10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = set()
        deadline = time.monotonic() + TIMEOUT
        while len(seen) < calls:
            assert time.monotonic() < deadline and sim.poll() is None
            daemon.heartbeat()
            seen |= {idx for idx, gen, st in daemon.scan() if st == _ring.SLOT_ACTIVE}
            time.sleep(0.01)
        daemon.close()  # gone: the heartbeat is cleared
        sim.communicate(timeout=TIMEOUT)
        assert sim.returncode == 0
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    daemon = Pool.open(shm_path, calls)
    assert daemon.reattached
    batch = Batch()
    states = {idx: (gen, st) for idx, gen, st in daemon.scan()}
    assert sorted(states) == sorted(seen)
    assert all(st == _ring.SLOT_CLOSING for gen, st in states.values()), states
    for idx, (gen, st) in states.items():
        daemon.watch(idx, gen)
    got = collections.defaultdict(list)
    while daemon.drain(batch):
        for slot, typ, track, seq, ts, data in batch.records():
            got[slot].append(seq)
    frames = seconds * 1000 // ptime
    assert {idx: seqs for idx, seqs in got.items()} == {idx: list(range(frames)) for idx in seen}
    daemon.close()


if __name__ == "__main__":
    daemon_main(json.loads(sys.argv[1]))
