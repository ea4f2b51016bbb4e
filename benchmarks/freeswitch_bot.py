"""Issue 15 on a real FreeSWITCH over SIP: the bot app, `park` after
`ai_stream`, a start before the daemon, daemon stop and loss. Run by hand as
root (it re-executes itself in a network namespace with only lo, as
benchmarks/freeswitch_calls.py does):

    python3 benchmarks/freeswitch_bot.py --patched /tmp/fs/patched --module SO [--smartstream TREE] [--points 1,2,3,4]

A calling FreeSWITCH (A) calls the called one (B) over SIP, PCMU, and sends
30 s of 600 Hz; B streams into `smartstream run` (from TREE) into an AI server
here (tests/aiserver.py), which scripts its answers by the number called.
B's event socket is watched for the whole run (channel answer/hangup,
ai_stream::*). Points, in the order run:

1. 5001 = `answer, ai_stream_bot` and nothing else: the server sends 1 s of
   440 Hz with a Mark in the middle, then Hangup NORMAL_UNSPECIFIED. A's
   recording has the tone once, 1000 ms within two frames, its FFT peak at
   440 Hz; the server gets MarkReached back; B hangs up with that cause.
   5011, the same extension: the server sends Transfer 6000 (XML, the
   channel's context; granted in the daemon's transfer_allow, the module's
   default transfer-allow); the app returns (ai_stream_bot_end=transfer) and
   the channel lands in 6000 (landed=yes).
2. 5002 = `answer, ai_stream, park`, 1 s of TTS sent: an ai_stream::error for
   the channel says it is parked, and B's log has the same text.
4. 5004 = `answer, ai_stream, playback silence`: SIGTERM, then kill -9 of the
   daemon mid-call: ai_stream::error "daemon stopped" / "daemon lost" within
   heartbeat_timeout_ms (200) + 60 ms of the signal (event timestamp against
   the signal's wall clock), B's log says so, "daemon back" after each
   restart, the stream resumes (StreamStart.resumed) and the call's
   sequences have no unaccounted hole over its three streams.
3. The daemon stopped cleanly (its pool file stays), 5004's dialplan on 5003:
   the start waits (ai_stream_status), the daemon starts 3 s later: a new
   StreamStart (resumed=false, next_sequence 0), frames contiguous from 0,
   about 50/s over the whole call (answer to hangup, within 10 frames), the
   first captured before the daemon started. 8 kHz frames in a 256 KiB up
   ring: about 14 s of capacity. The wait is longer than the default 2 s
   resume window: a stream not yet up keeps its audio in the ring.

Ports differ from freeswitch_calls.py's so both can share a namespace.
Prints a table; exit 1 on any mismatch. Logs stay in the printed temp dir.
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import freeswitch_calls as fc  # noqa: E402  (FreeSWITCH runner, netns, wait_for)
import freeswitch_playback as fp  # noqa: E402  (tone measures)
from smartstream import esl  # noqa: E402
from smartstream.v1 import smartstream_pb2 as pb  # noqa: E402
from tests.aiserver import AIServer  # noqa: E402

CALLER_SIP, CALLEE_SIP, CALLER_ESL, CALLEE_ESL = 5180, 5190, 8221, 8222
AI_PORT, ADMIN_PORT = 50151, 9564
RATE, FRAME = fp.RATE, fp.FRAME
HEARTBEAT_MS = 200
SIGNAL_SLACK_MS = 60          # the module's 20 ms poll, the event's trip, a loaded machine
CAUSE = "NORMAL_UNSPECIFIED"  # not the default NORMAL_CLEARING: B's cause is the one sent
SUBSCRIBE = ("event json CHANNEL_ANSWER CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE "
             "CUSTOM ai_stream::start ai_stream::stop ai_stream::error ai_stream::mark")


def extensions() -> str:
    """B's dialplan beyond the template's: one extension per point, and the transfer's landing."""
    def ext(number, *actions):
        acts = "".join(f'<action application="{a}" data="{d}"/>' for a, d in actions)
        return (f'<extension name="n{number}"><condition field="destination_number" '
                f'expression="^{number}$">{acts}</condition></extension>')
    stream = f"127.0.0.1:{AI_PORT} sample_rate={RATE}"
    return "\n".join([
        ext("(5001|5011)", ("answer", ""), ("ai_stream_bot", stream)),
        ext("5002", ("answer", ""), ("ai_stream", stream), ("park", "")),
        ext("(5003|5004)", ("answer", ""), ("ai_stream", stream), ("playback", "silence_stream://-1")),
        ext("6000", ("set", "landed=yes"), ("playback", "silence_stream://-1")),
    ])


def tone(hz: float, seconds: float, amplitude: int = fp.AMPLITUDE) -> bytes:
    n = int(RATE * seconds)
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(n) / RATE)).astype("<i2").tobytes()


TTS = tone(440, 1.0)
SCRIPTS = {   # what the AI server sends, seconds after StreamStart, by number called
    "5001": ((0.5, dict(audio=pb.Audio(pcm=TTS[:RATE], sample_rate=RATE))),
             (0.5, dict(mark=pb.Mark(name="mid"))),
             (0.5, dict(audio=pb.Audio(pcm=TTS[RATE:], sample_rate=RATE))),
             (2.5, dict(hangup=pb.Hangup(cause=CAUSE)))),
    "5011": ((1.0, dict(transfer=pb.Transfer(destination="6000"))),),
    "5002": ((0.5, dict(audio=pb.Audio(pcm=TTS, sample_rate=RATE))),),
}


def on_start(rec) -> None:
    rec.t0 = time.time()
    if rec.start.resumed:
        return
    loop = asyncio.get_running_loop()
    for at, kw in SCRIPTS.get(rec.start.callee, ()):
        loop.call_later(at, lambda kw=kw: rec.send(**kw))


class Events:
    """B's events (ESL `event json`) as they arrive."""

    def __init__(self):
        self.got: list[dict] = []
        self.arrived = asyncio.Event()

    async def open(self, port: int) -> None:
        self.conn = await esl.Connection.open("127.0.0.1", port, "ClueCon")
        # esl.Connection has no public subscribe: smartstreamctl needs none.
        await self.conn._send(SUBSCRIBE, "command/reply")
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        while True:
            msg = await self.conn._read_message()
            if msg.content_type == "text/event-json":
                self.got.append({**json.loads(msg.body), "received": time.time()})
                self.arrived.set()

    async def wait(self, pred, timeout: float, what: str) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            hit = next((e for e in self.got if pred(e)), None)
            if hit:
                return hit
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise TimeoutError(what) from None

    def close(self) -> None:
        if hasattr(self, "task"):
            self.task.cancel()
            self.conn.close()


def when(ev: dict) -> float:
    """The event's own time (s): FreeSWITCH's clock, which may lag the wall clock by some ms."""
    return int(ev["Event-Date-Timestamp"]) / 1e6


def ai_error(text: str, uuid: str | None = None, after: float = 0.0):
    """An ai_stream::error with that text, received after that wall-clock time."""
    return lambda e: (e.get("Event-Subclass") == "ai_stream::error" and text in e.get("AI-Stream-Error", "")
                      and (uuid is None or e.get("Unique-ID") == uuid) and e["received"] >= after)


def channel_event(name: str, uuid: str):
    return lambda e: e.get("Event-Name") == name and e.get("Unique-ID") == uuid


class Daemon:
    """`smartstream run` from a tree, started and signalled by the points."""

    def __init__(self, tree: Path, toml: Path, log: Path):
        self.tree, self.toml, self.log, self.proc = tree, toml, open(log, "ab"), None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        self.proc = subprocess.Popen([sys.executable, "-m", "smartstream.cli", "run", "--config", str(self.toml)],
                                     cwd=self.tree, env=env, stdout=self.log, stderr=self.log)
        await asyncio.to_thread(fc.wait_for, lambda: self.running() and fc.daemon_healthy(ADMIN_PORT), 30,
                                f"daemon did not start (see {self.log.name})")

    def signal(self, sig: int) -> float:
        t = time.time()
        self.proc.send_signal(sig)
        return t

    async def exited(self) -> int:
        return await asyncio.to_thread(self.proc.wait, 15)

    async def stop(self) -> None:
        if self.running():
            self.signal(signal.SIGTERM)
            await self.exited()


class Rig:
    def __init__(self, args, work: Path):
        self.args, self.work, self.rows = args, work, []
        self.pool = work / "run" / "smartstream.pool"
        self.server = AIServer(on_start=on_start)
        self.events = Events()
        self.fses = []

    def row(self, point: str, check: str, measured, ok: bool) -> None:
        self.rows.append((point, check, str(measured), bool(ok)))

    async def setup(self) -> None:
        (self.work / "run").mkdir(mode=0o750)
        await self.server.start(AI_PORT)
        toml = self.work / "smartstream.toml"
        toml.write_text(f'pool_path = "{self.pool}"\npool_slots = 4\nadmin_listen = "127.0.0.1:{ADMIN_PORT}"\n'
                        f'heartbeat_timeout_ms = {HEARTBEAT_MS}\n'
                        f'log_level = "INFO"\n'
                        f'[targets."127.0.0.1:{AI_PORT}"]\n'
                        f'allow_actions = ["hangup", "transfer", "event"]\ntransfer_allow = ["XML:"]\n')
        self.daemon = Daemon(self.args.smartstream, toml, self.work / "daemon.log")
        await self.daemon.start()
        self.a_tone = self.work / "a600.wav"
        with wave.open(str(self.a_tone), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
            # Longer than any call here: reopening the file at a loop costs A a packet of what it hears.
            w.writeframes(tone(600, 30.0, 4000))
        common = dict(CODEC="PCMU", SPEECH_WAV="silence_stream://-1", STREAM_ACTIONS="")
        self.caller = fc.FreeSwitch(self.args.patched, self.work / "caller", CALLER_SIP, CALLER_ESL, 21000,
                                    POOL_PATH="", EXTRA_MODULES="", **common)
        self.fses.append(self.caller)
        self.callee = fc.FreeSwitch(self.args.patched, self.work / "callee", CALLEE_SIP, CALLEE_ESL, 31000,
                                    POOL_PATH=self.pool, EXTRA_MODULES=f'<load module="{self.args.module}"/>',
                                    EXTENSIONS=extensions(), **common)
        self.fses.append(self.callee)
        await self.events.open(CALLEE_ESL)

    async def teardown(self) -> None:
        self.events.close()
        with open(self.work / "callee-events.jsonl", "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in self.events.got)
        for fs in reversed(self.fses):
            fs.stop()
        if hasattr(self, "daemon"):
            await self.daemon.stop()
        await self.server.stop(0)

    async def api(self, fs, cmd: str, check: bool = True) -> str:
        return await asyncio.to_thread(fs.api, cmd, check)

    async def originate(self, number: str, record: Path | None = None) -> None:
        rec = f",RECORD_READ_ONLY=true,execute_on_answer='record_session {record}'" if record else ""
        await self.api(self.caller, f"bgapi originate {{absolute_codec_string=PCMU{rec}}}"
                                    f"sofia/bench/{number}@127.0.0.1:{CALLEE_SIP} &endless_playback({self.a_tone})")

    async def next_start(self, callee: str, timeout: float = 10.0, uuid: str | None = None):
        """The next stream the AI server gets for that number (and call)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                rec = await asyncio.wait_for(self.server.started.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise TimeoutError(f"no StreamStart for {callee} within {timeout:g} s") from None
            if rec.start.callee == callee and uuid in (None, rec.uuid):
                return rec

    async def var(self, uuid: str, name: str) -> str:
        v = (await self.api(self.callee, f"uuid_getvar {uuid} {name}", check=False)).strip()
        return "" if v == "_undef_" else v

    async def poll(self, fn, timeout: float):
        """fn() (plain or async) until truthy or timeout; its last value."""
        deadline = time.monotonic() + timeout
        while True:
            v = fn()
            v = await v if inspect.isawaitable(v) else v
            if v or time.monotonic() > deadline:
                return v
            await asyncio.sleep(0.1)

    async def log_lines(self, pattern: str, at_least: int = 1, timeout: float = 2.0) -> list[str]:
        """The lines of B's log matching the regex, once there are at_least of them (or the timeout)."""
        path = self.callee.home / "log" / "freeswitch.log"

        def find():
            text = path.read_text(errors="replace") if path.exists() else ""
            lines = [ln.strip() for ln in text.splitlines() if re.search(pattern, ln)]
            return lines if len(lines) >= at_least else []
        return await self.poll(find, timeout)

    async def hang_up_all(self) -> None:
        for fs in self.fses:
            await self.api(fs, "hupall NORMAL_CLEARING", check=False)
        for fs in self.fses:
            await asyncio.to_thread(fc.wait_for, lambda fs=fs: not fs.channels(), 15, f"{fs.home.name}: calls stay up")

    # ---------------------------------------------------------------- points

    async def bot_hangup(self) -> None:
        p = "1 bot+hangup"
        heard = self.work / "heard.wav"
        await self.originate("5001", record=heard)
        rec = await self.next_start("5001")
        hup = await self.events.wait(channel_event("CHANNEL_HANGUP_COMPLETE", rec.uuid), 15, "B did not hang up")
        await asyncio.to_thread(fc.wait_for, lambda: not self.caller.channels(), 10, "A stays up")
        await asyncio.wait_for(rec.done.wait(), 10)
        with wave.open(str(heard)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
        tones = [(a, b) for loud, a, b in fp.tone_runs(pcm) if loud]
        ms = fp.tone_ms(pcm)
        peak, share = 0.0, 0.0
        if tones:
            seg = pcm[tones[0][0] * FRAME:(tones[-1][1] + 1) * FRAME]
            spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
            hz = np.fft.rfftfreq(len(seg), 1 / RATE)
            peak, share = float(hz[np.argmax(spec)]), float(spec[abs(hz - 440) <= 20].sum() / spec.sum())
        self.row(p, "A hears the TTS: 1 run, 1000±40 ms, 440 Hz",
                 f"{len(tones)} run(s), {ms:.0f} ms, peak {peak:.1f} Hz, {share:.0%} of energy in 440±20 Hz",
                 len(tones) == 1 and abs(ms - 1000) <= 40 and abs(peak - 440) <= 5 and share >= 0.9)
        marks = [(m.mark.name, m.mark.cleared) for m in rec.messages if m.HasField("mark")]
        self.row(p, "MarkReached 'mid' back", marks, marks == [("mid", False)])
        self.row(p, f"B's hangup cause {CAUSE}", hup.get("Hangup-Cause"), hup.get("Hangup-Cause") == CAUSE)

    async def bot_transfer(self) -> None:
        p = "1 bot+transfer"
        await self.originate("5011")
        rec = await self.next_start("5011")
        landed = await self.poll(lambda: self.var(rec.uuid, "landed"), 6)
        self.row(p, "Transfer 6000: lands there (landed=yes)", landed or "-", landed == "yes")
        end = await self.var(rec.uuid, "ai_stream_bot_end")
        self.row(p, "ai_stream_bot returned (ai_stream_bot_end)", end or "-", end == "transfer")
        refused = [m.refused.detail for m in rec.messages if m.HasField("refused")]
        self.row(p, "Transfer not refused", refused or "none", not refused)
        # The bot stops its stream on leaving (README §4), the call still up in 6000.
        try:
            await asyncio.wait_for(rec.done.wait(), 3)
        except TimeoutError:
            pass
        end = next((m.end for m in rec.messages if m.HasField("end")), None)
        reason = pb.StreamEnd.Reason.Name(end.reason) if end else "none within 3 s"
        self.row(p, "the bot's stream ends REASON_STOPPED, call up", reason, reason == "REASON_STOPPED")

    async def park(self) -> None:
        p = "2 ai_stream+park"
        await self.originate("5002")
        rec = await self.next_start("5002")
        try:
            ev = await self.events.wait(ai_error("", rec.uuid), 6, "no ai_stream::error for the channel")
        except TimeoutError as e:
            self.row(p, "ai_stream::error on B's ESL", e, False)
            return
        reason = ev.get("AI-Stream-Error", "")
        self.row(p, "ai_stream::error on B's ESL names park",
                 f"{reason!r}, {ev['received'] - rec.t0 - 0.5:.2f} s after the TTS", "park" in reason.lower())
        lines = await self.log_lines(re.escape(reason))
        self.row(p, "same text in B's log", lines[0] if lines else "-", lines)

    async def daemon_stop_kill(self) -> None:
        if not self.daemon.running():
            await self.daemon.start()
        await self.originate("5004")
        rec = await self.next_start("5004")
        uuid = rec.uuid
        await asyncio.sleep(1)
        for n, (how, sig, word) in enumerate((("SIGTERM", signal.SIGTERM, "daemon stopped"),
                                              ("kill -9", signal.SIGKILL, "daemon lost")), 1):
            p = f"4 {how}"
            t = self.daemon.signal(sig)
            ev = await self.events.wait(ai_error(word, after=t), 5, f"no ai_stream::error '{word}'")
            ms = (ev["received"] - t) * 1000
            self.row(p, f"'{word}' event received within {HEARTBEAT_MS}+{SIGNAL_SLACK_MS} ms of the signal",
                     f"{ms:.0f} ms (event's own stamp {(when(ev) - t) * 1000:.0f} ms)",
                     ms <= HEARTBEAT_MS + SIGNAL_SLACK_MS)
            lines = await self.log_lines(word)
            self.row(p, f"'{word}' in B's log", lines[-1] if lines else "-", lines)
            rc = await self.daemon.exited()
            await asyncio.sleep(1)
            t = time.time()
            await self.daemon.start()
            ev = await self.events.wait(ai_error("daemon back", after=t), 5, "no 'daemon back'")
            self.row(p, "'daemon back' event after the restart (and in B's log)",
                     f"daemon exit {rc}; {(ev['received'] - t) * 1000:.0f} ms after the restart began",
                     await self.log_lines(r"daemon (is )?back", at_least=n))
            rec = await self.next_start("5004", uuid=uuid)
            first = rec.frames()[0].sequence if await self.poll(lambda: rec.frames(), 3) else None
            self.row(p, "stream resumed", f"resumed={rec.start.resumed} next_sequence={rec.start.next_sequence} "
                     f"first frame {first}", rec.start.resumed and first is not None)
            await asyncio.sleep(1)
        await self.hang_up_all()
        await asyncio.wait_for(rec.done.wait(), 10)
        recs = self.server.streams[uuid]
        seqs = {f.sequence for r in recs for f in r.frames()}
        gaps = {g.first_sequence + i for r in recs for g in r.gaps() for i in range(g.count)}
        missing = set(range(max(seqs) + 1)) - seqs - gaps
        self.row("4", "the call's frames over its streams: holes not in a Gap",
                 f"{len(recs)} streams, seq 0..{max(seqs)}, {len(missing)} missing, {len(gaps)} in Gaps",
                 len(recs) == 3 and not missing)

    async def start_before_daemon(self) -> None:
        p = "3 before daemon"
        if not self.daemon.running():
            await self.daemon.start()
        await self.daemon.stop()
        self.row(p, "pool file kept after a clean stop", self.pool, self.pool.exists())
        await self.originate("5003")

        async def b_leg():
            return next((c["uuid"] for c in self.callee.channels() if c.get("dest") == "5003"), None)
        uuid = await self.poll(b_leg, 10)
        if not uuid:
            raise TimeoutError("no B leg for 5003")
        status = await self.poll(lambda: self.var(uuid, "ai_stream_status"), 5)
        api = (await self.api(self.callee, f"uuid_ai_stream {uuid} status", check=False)).strip()
        self.row(p, "ai_stream_status says it waits", status or "-", "wait" in (status or "").lower())
        self.row(p, "uuid_ai_stream status", api[:90], api.startswith("+OK running"))
        await asyncio.sleep(3)
        t_daemon = time.monotonic_ns()
        await self.daemon.start()
        rec = await self.next_start("5003", uuid=uuid)
        self.row(p, "StreamStart resumed=false next_sequence=0",
                 f"resumed={rec.start.resumed} next_sequence={rec.start.next_sequence}",
                 not rec.start.resumed and rec.start.next_sequence == 0)
        await asyncio.sleep(3)
        await self.hang_up_all()
        await asyncio.wait_for(rec.done.wait(), 10)
        answer = await self.events.wait(channel_event("CHANNEL_ANSWER", uuid), 1, "no answer event")
        hangup = await self.events.wait(channel_event("CHANNEL_HANGUP", uuid), 1, "no hangup event")
        frames = rec.frames()
        seqs = [f.sequence for f in frames]
        dur = when(hangup) - when(answer)
        self.row(p, "frames from 0, contiguous, no Gap",
                 f"first {seqs[0] if seqs else '-'}, {len(seqs)} frames, {len(rec.gaps())} Gaps",
                 seqs == list(range(len(seqs))) and not rec.gaps())
        self.row(p, "~50 frames/s over the whole call (±10)", f"{len(seqs)} in {dur:.2f} s = {len(seqs) / dur:.1f}/s",
                 abs(len(seqs) - 50 * dur) <= 10)
        before = (t_daemon - frames[0].capture_ns) / 1e9 if frames else 0
        self.row(p, "first frame captured ≥ 3 s before the daemon started", f"{before:.2f} s", before >= 2.9)


POINTS = {"1": ("bot_hangup", "bot_transfer"), "2": ("park",), "4": ("daemon_stop_kill",),
          "3": ("start_before_daemon",)}


async def run(args) -> list:
    work = Path(tempfile.mkdtemp(prefix="fsbot-"))
    rig = Rig(args, work)
    try:
        await rig.setup()
        for point in POINTS:   # 4 before 3: 3 starts from the daemon 4 leaves running
            if point not in args.points:
                continue
            for name in POINTS[point]:
                try:
                    await getattr(rig, name)()
                except Exception as e:   # one point's failure is a row; the others still run
                    rig.row(f"{point} {name}", "ran to the end", f"{type(e).__name__}: {e}", False)
                try:
                    await rig.hang_up_all()
                except Exception as e:
                    rig.row(f"{point} {name}", "calls hung up after", e, False)
    finally:
        await rig.teardown()
    print(f"logs in {work} (callee/log/freeswitch.log, daemon.log, callee-events.jsonl)")
    return rig.rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--patched", type=Path, required=True, help="FreeSWITCH prefix (the core patch applied)")
    ap.add_argument("--module", type=Path, default=HERE.parent / "freeswitch_patch/mod_ai_stream/mod_ai_stream.so")
    ap.add_argument("--smartstream", type=Path, default=HERE.parent,
                    help="tree the daemon runs from (built: setup.py build_ext --inplace)")
    ap.add_argument("--points", default="1,2,3,4")
    args = ap.parse_args()
    if not fc.lo_only():
        os.execvp("unshare", ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                              sys.executable, *sys.argv])
    args.module, args.smartstream = args.module.resolve(), args.smartstream.resolve()
    args.points = set(args.points.split(","))
    rows = asyncio.run(run(args))
    print("| point | check | measured | ok |\n|---|---|---|---|")
    for point, check, measured, ok in rows:
        print(f"| {point} | {check} | {measured} | {'ok' if ok else 'FAIL'} |")
    bad = [r for r in rows if not r[3]]
    print(f"FAILED: {len(bad)} of {len(rows)} checks" if bad else f"OK: {len(rows)} checks")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
