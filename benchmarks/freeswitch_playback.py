"""Issue 16 on a real FreeSWITCH over SIP: SendDtmf, pause/continue and
drained as a caller hears them. Run by hand as root (it re-executes itself in
a network namespace with only lo, as benchmarks/freeswitch_calls.py does):

    python3 benchmarks/freeswitch_playback.py --patched /tmp/fs/patched --module SO

A calling FreeSWITCH (A) calls the called one (B), which runs
`ai_stream 127.0.0.1:50051 sample_rate=8000` into `smartstream run` into an
AI server here (tests/aiserver.py). B's own audio is silence, so what A
hears is the TTS alone. The server sends 1 s of 440 Hz with a Mark at 0.5 s,
pauses at 0.8 s, asks for PlaybackStatus at 1.3 s, continues at 1.8 s, and
sends SendDtmf "12#" (120 ms) at 3.1 s, after the tone: FreeSWITCH sends no audio
RTP while it sends RFC 2833 events, so TTS played meanwhile goes unheard.
Checks: A gets the digits as RFC 2833 DTMF events (its event socket); A's
recording has the tone in two parts with a pause-long silence between, the
first as long as PlaybackStatus says was played at the pause, the second as
long as it says was still queued (within a frame each); PlaybackDrained says
all 1000 ms played. Exit 1 on any mismatch.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import freeswitch_calls as fc  # noqa: E402  (its FreeSWITCH runner and ports)
from smartstream.v1 import smartstream_pb2 as pb  # noqa: E402
from tests.aiserver import AIServer  # noqa: E402

AI_PORT = fc.SINK_PORT
RATE, FRAME, AMPLITUDE = 8000, 160, 8000
# Seconds after StreamStart; the tone waits for the media path to settle (else
# A loses the call's first 20 ms: FreeSWITCH, not playback).
SPEAK_AT, PAUSE_AT, STATUS_AT, CONTINUE_AT, DTMF_AT = 0.5, 0.8, 1.3, 1.8, 3.1


async def dtmf_events(port: int, out: list, ready: asyncio.Event) -> None:
    """(digit, duration in samples, source) of every DTMF event on A."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for cmd in (None, b"auth ClueCon\n\n", b"event plain DTMF\n\n"):
        if cmd:
            w.write(cmd)
        await r.readuntil(b"\n\n")
    ready.set()
    while True:
        head = (await r.readuntil(b"\n\n")).decode()
        n = next((int(x.split(":")[1]) for x in head.splitlines() if x.startswith("Content-Length")), 0)
        ev = dict(x.split(": ", 1) for x in (await r.readexactly(n)).decode().splitlines() if ": " in x)
        if ev.get("Event-Name") == "DTMF":
            out.append((ev["DTMF-Digit"].replace("%23", "#"), int(ev["DTMF-Duration"]), ev["DTMF-Source"]))


def tone_runs(pcm: np.ndarray) -> list[tuple[bool, int, int]]:
    """(tone?, first frame, last frame) runs of the 20 ms frames of a recording."""
    runs = []
    for i in range(len(pcm) // FRAME):
        loud = bool(np.sqrt(np.mean(pcm[i * FRAME:(i + 1) * FRAME] ** 2)) > 1000)
        if runs and runs[-1][0] == loud:
            runs[-1][2] = i
        else:
            runs.append([loud, i, i])
    return [tuple(r) for r in runs]


def tone_ms(pcm: np.ndarray) -> float:
    """How long the tone sounded: its energy over a full-amplitude sine's, so
    frames it only partly fills count for what they hold."""
    return float(np.sum(pcm ** 2) / (AMPLITUDE ** 2 / 2) / RATE * 1000)


def script(rec) -> None:
    loop = asyncio.get_running_loop()
    tone = (AMPLITUDE * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype("<i2").tobytes()
    for at, kw in ((SPEAK_AT, dict(audio=pb.Audio(pcm=tone, sample_rate=RATE))),
                   (SPEAK_AT, dict(mark=pb.Mark(name="tone-end"))),
                   (PAUSE_AT, dict(pause_playback=pb.PausePlayback())),
                   (STATUS_AT, dict(get_playback_status=pb.GetPlaybackStatus(request_id="mid"))),
                   (CONTINUE_AT, dict(continue_playback=pb.ContinuePlayback())),
                   (DTMF_AT, dict(send_dtmf=pb.SendDtmf(digits="12#", duration_ms=120)))):
        loop.call_later(at, lambda kw=kw: rec.send(**kw))


async def run(args) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="fsplayback-"))
    pool = f"/dev/shm/fsplayback-{os.getpid()}.pool"
    server = AIServer(on_start=script)
    await server.start(AI_PORT)
    toml = work / "smartstream.toml"
    toml.write_text(f'pool_path = "{pool}"\npool_slots = 4\nadmin_listen = "127.0.0.1:{fc.ADMIN_PORT}"\n'
                    f'[targets."127.0.0.1:{AI_PORT}"]\nallow_actions = ["hangup", "event", "send_dtmf"]\n')
    log = open(work / "daemon.log", "wb")
    daemon = subprocess.Popen([sys.executable, "-m", "smartstream.cli", "run", "--config", str(toml)],
                              cwd=HERE.parent, stdout=log, stderr=log)
    fses = []
    try:
        await asyncio.to_thread(fc.wait_for, fc.daemon_healthy, 30, f"daemon (see {work}/daemon.log)")
        common = dict(CODEC="PCMU", SPEECH_WAV="silence_stream://-1")
        fses.append(fc.FreeSwitch(args.patched, work / "caller", fc.CALLER_SIP, fc.CALLER_ESL, 20000,
                                  POOL_PATH="", STREAM_ACTIONS="", EXTRA_MODULES="", **common))
        fses.append(fc.FreeSwitch(args.patched, work / "callee", fc.CALLEE_SIP, fc.CALLEE_ESL, 30000,
                                  POOL_PATH=pool, EXTRA_MODULES=f'<load module="{args.module}"/>',
                                  STREAM_ACTIONS=f'<action application="ai_stream" '
                                                 f'data="127.0.0.1:{AI_PORT} sample_rate={RATE}"/>', **common))
        digits, ready = [], asyncio.Event()
        esl = asyncio.ensure_future(dtmf_events(fc.CALLER_ESL, digits, ready))
        await asyncio.wait_for(ready.wait(), 10)
        heard = work / "heard.wav"
        fses[0].api(f"bgapi originate {{absolute_codec_string=PCMU,RECORD_READ_ONLY=true,"
                    f"execute_on_answer='record_session {heard}'}}"
                    f"sofia/bench/5000@127.0.0.1:{fc.CALLEE_SIP} &park")
        rec = await asyncio.wait_for(server.started.get(), 20)
        await asyncio.sleep(DTMF_AT + 1.4)
        fses[0].api("hupall NORMAL_CLEARING", check=False)
        await asyncio.wait_for(rec.done.wait(), 10)
        await asyncio.sleep(0.5)
        esl.cancel()
    finally:
        for fs in reversed(fses):
            fs.stop()
        daemon.terminate()
        daemon.wait(15)
        await server.stop(0)
        if os.path.exists(pool):
            os.unlink(pool)
    got = {m.WhichOneof("msg"): m for m in rec.messages}
    with wave.open(str(heard)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
    status, drained, runs = got["playback_status"].playback_status, got["drained"].drained, tone_runs(pcm)
    tones = [(a, b) for loud, a, b in runs if loud]
    print(f"PlaybackStatus at {STATUS_AT} s: {str(status).strip()!r}")
    print(f"PlaybackDrained: {str(drained).strip()!r}; DtmfSent: {'dtmf_sent' in got}")
    print(f"A's DTMF events (digit, samples, source): {digits}")
    print(f"A heard, 20 ms frames (tone?, first, last): {runs}")
    pause_ms = (tones[1][0] - tones[0][1] - 1) * 20 if len(tones) == 2 else None
    cut = (tones[0][1] + tones[1][0]) // 2 * FRAME if len(tones) == 2 else 0
    parts = [tone_ms(pcm[:cut]), tone_ms(pcm[cut:])] if cut else []
    problems = [p for ok, p in (
        (digits == [("1", 960, "RTP"), ("2", 960, "RTP"), ("#", 960, "RTP")], "DTMF at A"),
        (len(tones) == 2, "tone in two parts"),
        (parts and abs(parts[0] - status.played_ms) <= 20, "before the pause: what was played"),
        (parts and abs(parts[1] - status.queued_ms) <= 20, "after it: what was still queued"),
        (pause_ms is not None and abs(pause_ms - (CONTINUE_AT - PAUSE_AT) * 1000) <= 60, "pause length"),
        (status.paused and status.queued_ms + status.played_ms == 1000, "status while paused"),
        ((drained.played_ms, drained.last_mark) == (1000, "tone-end"), "drained"),
    ) if not ok]
    print(f"tone heard before/after the pause: {[round(x) for x in parts]} ms; "
          f"pause heard: {pause_ms} ms; logs in {work}")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patched", type=Path, required=True, help="FreeSWITCH prefix")
    ap.add_argument("--module", type=Path, default=HERE.parent / "freeswitch_patch/mod_ai_stream/mod_ai_stream.so")
    args = ap.parse_args()
    if not fc.lo_only():
        os.execvp("unshare", ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                              sys.executable, *sys.argv])
    args.module = args.module.resolve()
    problems = asyncio.run(run(args))
    print("FAILED: " + ", ".join(problems) if problems else "OK")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
