"""Real SIP calls through two FreeSWITCH on 127.0.0.1, for SmartStream on a
patched core (read hook), on a stock core (media-bug fallback), for
mod_audio_stream, and with no streaming at all (the baseline each round's
increment is taken over).

    python3 benchmarks/freeswitch_calls.py --patched /tmp/fs/patched [--stock /tmp/fs/stock] \\
        [--audio-stream mod_audio_stream.so] [--module freeswitch_patch/mod_ai_stream/mod_ai_stream.so] \\
        [--smartstream TREE] [--calls 10,50] [--rounds 3] [--window 30] [--vad] [--codec PCMU|OPUS] \\
        [--sink h2|detail] [--systems none,patched,stock,audio_stream]

Run by hand, not in CI, as root: the script re-executes itself in a new
network namespace with only `lo` (`unshare -n`), unless it already is in
one, so all SIP, RTP, gRPC and event-socket traffic stays on 127.0.0.1 with
fixed ports. Building FreeSWITCH stays outside the repository
(freeswitch_patch/README.md says how); this takes installed prefixes.

A calling FreeSWITCH (the patched prefix, kept up for the whole run) places N
calls with `originate sofia/bench/5000@127.0.0.1:5090` and plays a
speech-like loop (espeak-ng sentences with pauses, made here with sox), with
`rtp_enable_vad_out=true` (silence suppression) if --vad. For each system
and round a fresh called FreeSWITCH answers, runs the system
(`ai_stream 127.0.0.1:50051` into `smartstream run` into a sink, or
`uuid_audio_stream <uuid> start ws://127.0.0.1:50051 mono 8k` into a
WebSocket sink in this file that counts binary messages) and plays the loop
back. Once every call is up (and, when streaming, every AI stream
open) and --settle seconds have passed, a --window second steady window
measures, from /proc/<pid>/stat, the CPU of the called FreeSWITCH, the
daemon and the sink in % of one core; frames per second per call at the
sink; hook -> sink latency p50/p99 (the frame's capture_ns against the
sink's CLOCK_MONOTONIC, same host); RSS; the pool's shared memory per slot
(pages in use over max(16, N) slots).
Systems run interleaved within each round; the table gives medians with
min-max over rounds.

Sinks: `h2` is benchmarks/sinks.py h2 (cheap, counts frames and samples
every 16th for latency); `detail` is a grpc.aio server in this file that
decodes every message and counts synthesized frames, missing sequence
numbers, holes in capture time (> 30 ms between frames) and Gap messages
per call: for checks at a few calls, not for CPU at 50.

Writes OUT/freeswitch_calls.json (every run) and OUT/freeswitch_calls.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sinks import read_latency, write_status, ws_accept   # benchmarks/ is this script's directory

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TEMPLATES = HERE / "freeswitch"
TICK_HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CALLER_SIP, CALLEE_SIP, CALLER_ESL, CALLEE_ESL = 5080, 5090, 8121, 8122
SINK_PORT, ADMIN_PORT = 50051, 9464
SYSTEMS = ("none", "patched", "stock", "audio_stream")
SENTENCES = ("Thank you for calling. How can I help you today?",
             "I would like to check the status of my order, please.",
             "One moment. Let me look that up for you.")
HOLE_NS = 30_000_000   # a capture gap above 1.5 frames of 20 ms


def lo_only() -> bool:
    with open("/proc/self/net/dev") as f:
        return [line.split(":")[0].strip() for line in f.readlines()[2:]] == ["lo"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_HZ


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE // 1024


def fill(template: Path, out: Path, **values) -> Path:
    text = template.read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    out.write_text(text)
    return out


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pct(values: list, q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def make_speech(work: Path) -> Path:
    """8 kHz mono speech with a 1.5 s pause after each sentence, so VAD has silence to suppress."""
    parts = []
    for i, text in enumerate(SENTENCES):
        raw, part = work / f"s{i}-raw.wav", work / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(part), "pad", "0", "1.5"],
                       check=True)
        parts.append(str(part))
    out = work / "speech.wav"
    subprocess.run(["sox", *parts, str(out)], check=True)
    return out


class FreeSwitch:
    """One FreeSWITCH from `prefix`, its conf/log/db/run dirs under `home`."""

    def __init__(self, prefix: Path, home: Path, sip: int, esl: int, rtp: int, **conf):
        self.prefix, self.home, self.sip, self.esl = prefix, home, sip, esl
        for d in ("conf", "log", "db", "run", "temp"):
            (home / d).mkdir(parents=True, exist_ok=True)
        fill(TEMPLATES / "freeswitch.xml", home / "conf" / "freeswitch.xml", SIP_PORT=sip, ESL_PORT=esl,
             RTP_START=rtp, RTP_END=rtp + 9998, LOG_DIR=home / "log", **{"EXTENSIONS": "", **conf})
        self.log = open(home / "stdout.log", "wb")
        # cwd: a core dump lands in home, not in the caller's directory.
        self.proc = subprocess.Popen(
            [str(prefix / "bin" / "freeswitch"), "-nonat", "-nf", "-nc", "-conf", str(home / "conf"),
             "-log", str(home / "log"), "-db", str(home / "db"), "-run", str(home / "run"),
             "-temp", str(home / "temp")], stdout=self.log, stderr=subprocess.STDOUT, cwd=home)
        try:
            wait_for(lambda: "RUNNING" in self.api("sofia status", check=False), 30,
                     f"FreeSWITCH {home.name} did not come up (see {home}/log)")
        except BaseException:
            self.stop()
            raise

    def api(self, cmd: str, check: bool = True) -> str:
        if self.proc.poll() is not None:
            raise RuntimeError(f"FreeSWITCH {self.home.name} exited with {self.proc.returncode}")
        r = subprocess.run([str(self.prefix / "bin" / "fs_cli"), "-H", "127.0.0.1", "-P", str(self.esl),
                            "-p", "ClueCon", "-x", cmd], capture_output=True, text=True, timeout=20)
        if check and (r.returncode or r.stdout.startswith("-ERR")):
            raise RuntimeError(f"{self.home.name}: {cmd}: {r.stdout.strip() or r.stderr.strip()}")
        return r.stdout

    def channels(self) -> list[dict]:
        out = self.api("show channels as json")
        return json.loads(out).get("rows", []) if out.strip().startswith("{") else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.api("fsctl shutdown", check=False)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def daemon_healthy(port: int = ADMIN_PORT) -> bool:
    """The daemon's /health: 200 once it ticks and stamps the pool's heartbeat."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def snapshot(pids: dict[str, int], status: Path | None) -> dict:
    """CPU seconds of each process and the sink's counters, at one instant."""
    snap = dict(t=time.monotonic(), cpu={k: cpu_seconds(p) for k, p in pids.items()})
    if status:
        # The sink replaces the file each time it writes it: frames/s over the files' own mtimes,
        # taken from the open file so that count and time belong together.
        with open(status) as f:
            st, mtime = json.load(f), os.fstat(f.fileno()).st_mtime
        snap.update(frames=st["frames"], lat_n=st.get("latency_n", 0), mtime=mtime, sink=st)
    return snap


def run_one(args, system: str, n: int, rnd: int, caller: FreeSwitch, speech: Path, work: Path) -> dict:
    tag = f"{system}-{n}-r{rnd}"
    home = work / tag
    home.mkdir()
    pool = f"/dev/shm/fscalls-{os.getpid()}-{tag}.pool"
    streaming, smartstream = system != "none", system in ("patched", "stock")
    # mod_audio_stream and the baseline on the patched core: with no hook set the patch is inert.
    prefix = args.stock if system == "stock" else args.patched
    rate = 8000 if args.codec == "PCMU" else 16000   # what both systems stream
    slots = max(16, n)
    log = open(home / "processes.log", "wb")
    procs, callee = [], None
    status = home / "sink.json" if streaming else None
    try:
        if streaming:
            # Daemon and sinks run from --smartstream (its package first on the path): a
            # tree whose daemon matches the module's csrc/ss_layout.h.
            env = {**os.environ, "PYTHONPATH": str(args.smartstream)}
            if system == "audio_stream":
                sink_cmd = [sys.executable, __file__, "--serve-ws-sink"]
            elif args.sink == "h2":
                sink_cmd = [sys.executable, str(args.smartstream / "benchmarks" / "sinks.py"), "h2"]
            else:
                sink_cmd = [sys.executable, __file__, "--serve-detail-sink"]
            procs.append(subprocess.Popen([*sink_cmd, "--port", str(SINK_PORT), "--status", str(status)],
                                          stdout=log, stderr=log, cwd=args.smartstream, env=env))
            wait_for(status.exists, 15, "sink did not start")
        if smartstream:
            toml = fill(TEMPLATES / "smartstream.toml", home / "smartstream.toml", POOL_PATH=pool,
                        POOL_SLOTS=slots, ADMIN_PORT=ADMIN_PORT)
            with open(toml, "a") as f:
                f.writelines(f"{kv}\n" for kv in args.daemon_setting)
            procs.append(subprocess.Popen([sys.executable, "-m", "smartstream.cli", "run", "--config", str(toml)],
                                          stdout=log, stderr=log, cwd=args.smartstream, env=env))
            wait_for(lambda: procs[-1].poll() is None and daemon_healthy(), 30,
                     f"daemon did not start (see {home}/processes.log)")
        actions, module = "", None
        if smartstream:
            actions = f'<action application="ai_stream" data="127.0.0.1:{SINK_PORT} sample_rate={rate}"/>'
            module = args.module
        elif system == "audio_stream":
            # mod_audio_stream has an API only: run it from the dialplan by variable expansion.
            actions = ('<action application="set" data="audio_stream_status=${uuid_audio_stream(${uuid} start '
                       f'ws://127.0.0.1:{SINK_PORT} mono {rate // 1000}k)}}"/>')
            module = args.audio_stream
        callee = FreeSwitch(prefix, home / "callee", CALLEE_SIP, CALLEE_ESL, 30000, CODEC=args.codec,
                            POOL_PATH=pool, SPEECH_WAV=speech, STREAM_ACTIONS=actions,
                            EXTRA_MODULES=f'<load module="{module}"/>' if module else "")
        vad = ",rtp_enable_vad_out=true" if args.vad else ""
        for i in range(n):
            caller.api(f"bgapi originate {{absolute_codec_string={args.codec},origination_caller_id_number="
                       f"{1000 + i}{vad}}}sofia/bench/5000@127.0.0.1:{CALLEE_SIP} &endless_playback({speech})")
            time.sleep(0.02)   # calls arrive over time, not in one 20 ms tick

        def all_up():
            up = sum(c.get("callstate") == "ACTIVE" for c in callee.channels()) >= n
            return up and (not streaming or (read_json(status) or {}).get("opened", 0) >= n)
        wait_for(all_up, 30 + n * 0.2, f"{tag}: not all {n} calls came up")
        time.sleep(args.settle)
        pids = dict(callee=callee.proc.pid, caller=caller.proc.pid)
        if streaming:
            pids.update(sink=procs[0].pid)
        mode = "media_bug" if system == "audio_stream" else ""
        first = callee.channels()[0]["uuid"]
        # What the call really negotiated, e.g. PCMU@8000 or opus@48000.
        negotiated = "@".join(callee.api(f"uuid_getvar {first} {v}").strip() for v in ("read_codec", "read_rate"))
        if smartstream:
            pids.update(daemon=procs[1].pid)
            mode = next((w.split("=", 1)[1] for w in callee.api(f"uuid_ai_stream {first} status").split()
                         if w.startswith("mode=")), "?")
        a = snapshot(pids, status)
        perf = profile_start(args, callee.proc.pid, home) if args.profile else None
        time.sleep(args.window)
        b = snapshot(pids, status)
        still_up = sum(c.get("callstate") == "ACTIVE" for c in callee.channels())
        dt = b["t"] - a["t"]
        res = dict(system=system, calls=n, round=rnd, window_s=dt, calls_up_at_end=still_up, mode=mode,
                   daemon_settings=args.daemon_setting if smartstream else [],
                   codec=negotiated, vad=args.vad, sink_kind=args.sink if streaming else "",
                   **{f"{k}_core_pct": (b["cpu"][k] - a["cpu"][k]) / dt * 100 for k in pids},
                   callee_rss_kib=rss_kib(callee.proc.pid))
        if perf:
            res["profile_top"] = profile_report(perf, home)
        if smartstream:
            res.update(daemon_rss_kib=rss_kib(procs[1].pid),
                       shm_kib_per_slot=os.stat(pool).st_blocks * 512 / 1024 / slots)
        if streaming:
            res["frames_per_s_per_call"] = (b["frames"] - a["frames"]) / (b["mtime"] - a["mtime"]) / n
            lat = read_latency(status, a["lat_n"], b["lat_n"])
            res.update(hook_p50_ms=pct(lat, 0.5) / 1e3, hook_p99_ms=pct(lat, 0.99) / 1e3, latency_samples=len(lat))
            if args.sink == "detail" and smartstream:
                per = {u: {k: v - a["sink"]["streams"].get(u, {}).get(k, 0) for k, v in s.items()}
                       for u, s in b["sink"]["streams"].items()}

                def total(k):
                    return sum(c[k] for c in per.values())
                res.update(timeline_corr=timeline_correlation(speech, b["sink"]["envelope"]),
                           synthesized_pct=100 * total("synthesized") / max(1, total("frames")),
                           holes_per_call=total("holes") / n, seq_missing=total("seq_missing"),
                           gap_frames=total("gap_frames"), per_call=per)
        return res
    finally:
        caller.api("hupall NORMAL_CLEARING", check=False)
        if callee:
            try:
                wait_for(lambda: not callee.channels(), 20, "calls did not hang up")
            finally:
                callee.stop()
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
        if os.path.exists(pool):
            os.unlink(pool)


def profile_start(args, pid: int, home: Path) -> subprocess.Popen:
    """perf record of the called FreeSWITCH (every thread) for the window. Its own cost
    lands in the CPU columns: compare profiles with profiles, CPU runs without --profile."""
    return subprocess.Popen(["perf", "record", "-q", "-F", "997", "-g", "-p", str(pid), "-o",
                             str(home / "perf.data"), "--", "sleep", str(args.window)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_report(perf: subprocess.Popen, home: Path, top: int = 25) -> list[list]:
    """[share %, shared object, symbol] of the callee's most sampled functions (self time)."""
    perf.wait(60)
    out = subprocess.run(["perf", "report", "-i", str(home / "perf.data"), "--stdio", "--no-children",
                          "-g", "none", "--sort", "dso,symbol", "--percent-limit", "0.3"],
                         capture_output=True, text=True).stdout
    (home / "perf.txt").write_text(out)
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].endswith("%") and not line.startswith("#"):
            rows.append([float(parts[0][:-1]), parts[1], parts[3].rstrip(" -")])
    return rows[:top]


def envelope(pcm: bytes) -> float:
    """A frame's loudness, log-compressed: speech and pauses, whatever the level."""
    import numpy as np
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.log1p(np.sqrt(np.mean(x * x)))) if len(x) else 0.0


def timeline_correlation(speech: Path, received: list[float]) -> float:
    """Pearson correlation of the first call's frame loudness with the caller's looped
    WAV at the best alignment: close to 1 when the timeline (pauses included) is the
    caller's, low when frames are missing or shifted."""
    import wave
    import numpy as np
    with wave.open(str(speech)) as w:
        pcm, spf = w.readframes(w.getnframes()), w.getframerate() // 50
    loop = np.array([envelope(pcm[i:i + 2 * spf]) for i in range(0, len(pcm) - 2 * spf + 1, 2 * spf)])
    got = np.array(received)
    if len(got) < 50 or not got.std():
        return 0.0
    return max(float(np.corrcoef(np.resize(np.roll(loop, -lag), len(got)), got)[0, 1])
               for lag in range(len(loop)))


async def serve_detail_sink(port: int, status: str) -> None:
    """A grpc.aio AI server that decodes every message; per call uuid: frames, synthesized frames,
    missing sequence numbers, capture-time holes and their length, Gap messages."""
    import grpc
    from smartstream.v1 import smartstream_pb2 as pb, smartstream_pb2_grpc as pb_grpc
    stats = dict(frames=0, opened=0, ended=0, latency_us=[], streams={}, envelope=[])

    class Servicer(pb_grpc.AIStreamServicer):
        async def Stream(self, requests, context):
            stats["opened"] += 1
            call, seq, cap = None, None, None
            async for m in requests:
                kind = m.WhichOneof("msg")
                if kind == "start":
                    call = stats["streams"].setdefault(m.start.call_uuid, dict(
                        frames=0, synthesized=0, seq_missing=0, holes=0, hole_ms=0, gap_msgs=0, gap_frames=0))
                elif kind == "audio" and m.audio.track != pb.TRACK_OUTBOUND and call is not None:
                    f = m.audio
                    stats["frames"] += 1
                    stats["latency_us"].append((time.monotonic_ns() - f.capture_ns) // 1000)
                    call["frames"] += 1
                    call["synthesized"] += f.synthesized
                    if call is next(iter(stats["streams"].values())):   # the first call's timeline
                        stats["envelope"].append(envelope(f.pcm))
                    if seq is not None and f.sequence > seq + 1:
                        call["seq_missing"] += f.sequence - seq - 1
                    if cap is not None and f.capture_ns - cap > HOLE_NS:
                        call["holes"] += 1
                        call["hole_ms"] += (f.capture_ns - cap) // 1_000_000 - 20
                    seq, cap = f.sequence, f.capture_ns
                elif kind == "gap" and call is not None:
                    call["gap_msgs"] += 1
                    call["gap_frames"] += m.gap.count
            stats["ended"] += 1

    server = grpc.aio.server()
    pb_grpc.add_AIStreamServicer_to_server(Servicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await report(stats, status)
    await server.stop(0)


async def report(stats: dict, status: str) -> None:
    """Write the sink's counters (and its CPU seconds) every 250 ms, as benchmarks/sinks.py does, until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while True:
        write_status(status, stats)
        if stop.is_set():
            return
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except asyncio.TimeoutError:
            pass


class WsAudioSink(asyncio.Protocol):
    """mod_audio_stream's AI side: one WebSocket per call, counting its binary (audio) messages.
    mod_audio_stream sends no capture time, so there is no latency to measure."""

    def __init__(self, stats: dict):
        self.stats, self.buf, self.upgraded = stats, bytearray(), False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf
        buf += data
        if not self.upgraded:
            if not ws_accept(buf, self.transport):
                return
            self.upgraded = True
            self.stats["opened"] += 1
        pos = 0
        while len(buf) - pos >= 2:
            opcode, n, hdr = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
            if n >= 126:
                hdr = 4 if n == 126 else 10
                if len(buf) - pos < hdr:
                    break
                n = int.from_bytes(buf[pos + 2:pos + hdr], "big")
            mask = buf[pos + hdr:pos + hdr + 4] if buf[pos + 1] & 0x80 else b""
            start = pos + hdr + len(mask)
            if len(buf) < start + n or (buf[pos + 1] & 0x80 and len(mask) < 4):
                break
            pos = start + n
            if opcode == 2:
                self.stats["frames"] += 1
            elif opcode == 9:   # ping: pong with its payload, unmasked
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[start:pos])) if mask else buf[start:pos]
                self.transport.write(bytes((0x8A, len(payload))) + payload)
            elif opcode == 8:
                self.stats["ended"] += 1
                self.transport.write(b"\x88\x02\x03\xe8")
                self.transport.close()
        del buf[:pos]


async def serve_ws_sink(port: int, status: str) -> None:
    stats = dict(frames=0, opened=0, ended=0, latency_us=[], streams={}, envelope=[])
    server = await asyncio.get_running_loop().create_server(lambda: WsAudioSink(stats), "127.0.0.1", port)
    await report(stats, status)
    server.close()


def spread(values: list[float], digits: int = 1) -> str:
    values = [v for v in values if v == v]   # NaN: not measured
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def table(runs: list[dict]) -> str:
    base = {(r["calls"], r["round"]): r["callee_core_pct"] for r in runs if r["system"] == "none"}
    lines = ["| system | N | rounds | mode | callee FS % | daemon % | increment FS+daemon % | sink % | "
             "frames/s per call | hook→sink p50 / p99 ms | FS RSS MiB | daemon RSS MiB | shm KiB/slot | "
             "calls up |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["calls"], r["system"]) for r in runs}, key=lambda k: (k[0], SYSTEMS.index(k[1])))
    for n, system in keys:
        rs = [r for r in runs if (r["calls"], r["system"]) == (n, system)]

        def col(k, scale=1):
            return [r.get(k, float("nan")) / scale for r in rs]
        inc = [r["callee_core_pct"] + r.get("daemon_core_pct", 0) - base[(n, r["round"])]
               for r in rs if (n, r["round"]) in base and system != "none"]
        lat = f"{spread(col('hook_p50_ms'))} / {spread(col('hook_p99_ms'))}" if system != "none" else "-"
        lines.append(
            f"| {system} | {n} | {len(rs)} | {'/'.join(sorted({r['mode'] for r in rs})) or '-'} | "
            f"{spread(col('callee_core_pct'))} | {spread(col('daemon_core_pct'))} | {spread(inc)} | "
            f"{spread(col('sink_core_pct'))} | {spread(col('frames_per_s_per_call'), 2)} | {lat} | "
            f"{spread(col('callee_rss_kib', 1024))} | {spread(col('daemon_rss_kib', 1024))} | "
            f"{spread(col('shm_kib_per_slot'), 0)} | {min(r['calls_up_at_end'] for r in rs)}/{n} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--patched", type=Path, help="FreeSWITCH prefix built with the core patch")
    ap.add_argument("--stock", type=Path, help="FreeSWITCH prefix without the patch (optional)")
    ap.add_argument("--audio-stream", type=Path, help="mod_audio_stream.so: adds system audio_stream (optional)")
    ap.add_argument("--module", type=Path, default=REPO / "freeswitch_patch/mod_ai_stream/mod_ai_stream.so",
                    help="mod_ai_stream.so, built from the same csrc/ as --smartstream's daemon")
    ap.add_argument("--smartstream", type=Path, default=REPO,
                    help="tree the daemon and sinks run from (built: setup.py build_ext --inplace)")
    ap.add_argument("--calls", default="10", help="comma-separated N, e.g. 10,50")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=float, default=30.0, help="steady window, s")
    ap.add_argument("--settle", type=float, default=5.0, help="s after every call is up before the window")
    ap.add_argument("--vad", action="store_true", help="rtp_enable_vad_out=true on the calling leg")
    ap.add_argument("--codec", default="PCMU", choices=("PCMU", "OPUS"))
    ap.add_argument("--sink", default="h2", choices=("h2", "detail"))
    ap.add_argument("--systems", help="comma-separated subset of none,patched,stock,audio_stream "
                                      "(default: all that were given)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "raw")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--daemon-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="a line added to the daemon's settings, e.g. drain_period_ms = 20 (repeatable)")
    ap.add_argument("--profile", action="store_true",
                    help="perf record the called FreeSWITCH in each window: top functions in the JSON")
    ap.add_argument("--serve-detail-sink", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-ws-sink", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--status", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_detail_sink:
        asyncio.run(serve_detail_sink(args.port, args.status))
        return
    if args.serve_ws_sink:
        asyncio.run(serve_ws_sink(args.port, args.status))
        return
    if not args.patched:
        ap.error("--patched PREFIX is required")
    if not lo_only():
        # A private network namespace: fixed ports, nothing leaves loopback.
        os.execvp("unshare", ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                              sys.executable, *sys.argv])
    args.module, args.smartstream = args.module.resolve(), args.smartstream.resolve()
    given = dict(stock=args.stock, audio_stream=args.audio_stream)
    systems = args.systems.split(",") if args.systems else [s for s in SYSTEMS if given.get(s, True)]
    for s in systems:
        if s not in SYSTEMS or not given.get(s, True):
            ap.error(f"system {s}: unknown, or needs --stock PREFIX / --audio-stream SO")
    if args.audio_stream:
        args.audio_stream = args.audio_stream.resolve()
    if {"patched", "stock"} & set(systems) and not args.module.exists():
        ap.error(f"no module at {args.module}: build it (freeswitch_patch/README.md §2) or pass --module")
    work = Path(tempfile.mkdtemp(prefix="fscalls-"))
    args.out.mkdir(parents=True, exist_ok=True)
    speech = make_speech(work)
    caller = FreeSwitch(args.patched, work / "caller", CALLER_SIP, CALLER_ESL, 20000, CODEC=args.codec,
                        POOL_PATH="", SPEECH_WAV=speech, STREAM_ACTIONS="", EXTRA_MODULES="")
    runs = []
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    try:
        for n in [int(x) for x in args.calls.split(",")]:
            for rnd in range(1, args.rounds + 1):
                for system in systems:
                    r = run_one(args, system, n, rnd, caller, speech, work)
                    runs.append(r)
                    print(json.dumps({k: v for k, v in r.items() if k != "per_call"}), flush=True)
                    for u, s in r.get("per_call", {}).items():
                        print(f"  call {u[:8]}: {s}", flush=True)
    finally:
        caller.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            subprocess.run(["rm", "-rf", str(work)])
    load = os.getloadavg()
    head = (f"Run {started}, {os.cpu_count()} cores, load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} at the end; "
            f"codec {args.codec}, VAD {'on' if args.vad else 'off'}, SmartStream's sink {args.sink} "
            f"(mod_audio_stream's: this file's WebSocket sink), {args.window:g} s windows. "
            f"% of one core; increment = callee FreeSWITCH + daemon minus the same round's `none`.\n\n"
            f"    {' '.join(['python3', 'benchmarks/freeswitch_calls.py', *sys.argv[1:]])}\n\n")
    md = head + table(runs) + "\n"
    (args.out / "freeswitch_calls.json").write_text(json.dumps(dict(started=started, argv=sys.argv, runs=runs),
                                                               indent=1))
    (args.out / "freeswitch_calls.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
