"""`make demo-bot`: the offline bot (examples/offline_bot.py) answers a
question spoken by espeak-ng, through the media simulator and the daemon,
and the time from the end of the question to the first answer sample the
caller heard is broken into hops.

    python examples/offline_demo.py ["question"] [--barge-in "words"]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pipecat.frames.frames import (
    InputAudioRawFrame, OutputAudioRawFrame, TranscriptionFrame, TTSAudioRawFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

try:
    from examples import offline_bot
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from examples import offline_bot
from smartstream import botkit
from smartstream._resample import Resampler
from smartstream.pipecat import pipecat_handler
from smartstream.pipecat.transport import SmartStreamOutputTransport

RATE = offline_bot.ASR_RATE
FRAME = RATE // 50           # samples per 20 ms frame
AUDIBLE = 200                # |sample| above this is speech, not espeak's near-silence
CALLER_VOICE = ["-v", "en-us+f2", "-s", "140"]   # pocketsphinx hears this espeak voice best
REPO = Path(__file__).resolve().parent.parent


def espeak(text: str, voice: list[str] = CALLER_VOICE) -> np.ndarray:
    """What espeak-ng says for `text`, as PCM16 at RATE."""
    out = subprocess.run(["espeak-ng", *voice, "--stdout", "--", text],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    return np.frombuffer(Resampler(rate, RATE)(pcm), dtype="<i2")


def audible_span(pcm: np.ndarray, start: int = 0) -> tuple[int, int]:
    """First and last audible sample at or after `start` (-1, -1: none)."""
    loud = np.flatnonzero(np.abs(pcm[start:].astype(np.int32)) > AUDIBLE)
    return (start + int(loud[0]), start + int(loud[-1])) if len(loud) else (-1, -1)


@dataclass
class Caller:
    """What the simulated caller says: utterances at offsets (s), then silence."""
    lines: list[tuple[float, str]]
    seconds: float
    pcm: np.ndarray = field(init=False)

    def __post_init__(self):
        self.pcm = np.zeros(int(self.seconds * RATE), dtype="<i2")
        for at, text in self.lines:
            said = espeak(text)
            self.pcm[int(at * RATE):int(at * RATE) + len(said)] = said[:len(self.pcm) - int(at * RATE)]

    def speech_end(self, line: int = 0) -> int:
        """Last audible sample of line `line`."""
        at = int(self.lines[line][0] * RATE)
        end = int(self.lines[line + 1][0] * RATE) if line + 1 < len(self.lines) else len(self.pcm)
        return audible_span(self.pcm[:end], at)[1]

    def write(self, path: Path) -> None:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(self.pcm.tobytes())


class LatencyObserver(BaseObserver):
    """Monotonic times of the first frames after the caller stopped speaking
    (the frame with sequence `end_seq`): each is when that hop was done."""

    def __init__(self, end_seq: int):
        super().__init__(observe_every_push=False)
        self.end_seq = end_seq
        self.t: dict[str, float] = {}

    def _first(self, name: str) -> None:
        if "caller_done" in self.t:
            self.t.setdefault(name, time.monotonic())

    async def on_push_frame(self, data: FramePushed):
        f = data.frame
        if isinstance(f, InputAudioRawFrame) and f.metadata.get("sequence") == self.end_seq:
            self.t["captured"] = f.metadata["capture_ns"] / 1e9   # same host: the same clock
            self.t["caller_done"] = time.monotonic()
        elif isinstance(f, VADUserStoppedSpeakingFrame):
            self._first("vad")
        elif isinstance(f, TranscriptionFrame):
            self._first("asr")
        elif isinstance(f, OutputAudioRawFrame) and isinstance(data.source, SmartStreamOutputTransport):
            self._first("sent")   # pushed on by the transport once written to the gateway
        elif isinstance(f, TTSAudioRawFrame):
            self._first("tts")

    def hops(self, heard_after_s: float) -> list[tuple[str, float]]:
        """(hop, ms); heard_after_s: end of speech -> first answer sample heard, in call time."""
        t = self.t
        steps = [("uplink: simulator -> daemon -> gRPC -> bot", "captured", "caller_done"),
                 ("VAD: end-of-turn silence (stop_secs 0.6)", "caller_done", "vad"),
                 ("ASR: pocketsphinx on the segment", "vad", "asr"),
                 ("brain + TTS: first espeak-ng audio", "asr", "tts"),
                 ("transport out: chunk + send", "tts", "sent")]
        out = [(name, (t[b] - t[a]) * 1000) for name, a, b in steps]
        out.append(("downlink: gRPC -> daemon -> playout -> caller",
                    heard_after_s * 1000 - (t["sent"] - t["captured"]) * 1000))
        return out


async def run(question: str, barge_in: str | None, workdir: Path) -> int:
    lines = [(0.5, question)] + ([(6.0, barge_in)] if barge_in else [])
    caller = Caller(lines, seconds=14 if barge_in else 9)
    caller.write(workdir / "caller.wav")
    end = caller.speech_end()
    observer = LatencyObserver(end_seq=end // FRAME)
    brain = offline_bot.Brain()
    handler = pipecat_handler(lambda call: offline_bot.bot(call, brain, observers=[observer]))
    pool = f"/dev/shm/smartstream-demo-bot-{os.getpid()}.pool"
    subprocess.run(["make", "-s", "-C", str(REPO / "csrc")], check=True)
    daemon = subprocess.Popen([sys.executable, "-m", "smartstream.cli", "run", "--pool-path", pool,
                               "--pool-slots", "4"], cwd=REPO, stdout=subprocess.DEVNULL)
    server, port = await botkit.start_server(handler)
    try:
        print(f"caller says: {question!r}" + (f", then over the answer: {barge_in!r}" if barge_in else ""))
        sim = await asyncio.create_subprocess_exec(
            str(REPO / "csrc" / "build" / "mediasim"), "--pool", pool, "--calls", "1",
            "--seconds", str(caller.seconds), "--source", str(workdir / "caller.wav"),
            "--target", f"127.0.0.1:{port}", "--uuid-prefix", "bot", "--record", str(workdir),
            "--wait-daemon", "15", stdout=asyncio.subprocess.DEVNULL)
        if await sim.wait():
            print(f"demo-bot: FAILED, the media simulator exited {sim.returncode}")
            return 1
    finally:
        await server.stop(1)
        daemon.terminate()
        daemon.wait()
        if os.path.exists(pool):
            os.unlink(pool)
    with wave.open(str(workdir / "bot-0000.wav")) as w:
        heard = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    first, _ = audible_span(heard, end)
    if first < 0 or not brain.heard:
        print("demo-bot: FAILED, the caller heard no answer")
        return 1
    print(f"\nend of question -> first answer sample heard: {(first - end) * 1000 / RATE:.0f} ms")
    for name, ms in observer.hops((first - end) / RATE):
        print(f"  {ms:7.0f} ms  {name}")
    print(f"recordings in {workdir}")
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("question", nargs="?", default="what is the weather like today")
    p.add_argument("--barge-in", help="what the caller says over the answer, 5.5 s after the question")
    a = p.parse_args()
    sys.exit(asyncio.run(run(a.question, a.barge_in, Path(tempfile.mkdtemp(prefix="smartstream-bot-")))))


if __name__ == "__main__":
    main()
