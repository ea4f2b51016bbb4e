"""The AI server is remote and untrusted (issue 13): one hostile server, raw
HTTP/2 (tests/hostile_peer.py) or grpc.aio (tests/aiserver.py), attacks its
own calls while three calls stream to a well-behaved server, all through one
daemon and the media simulator. For every attack:
  - the other calls keep their frames on time: counted at the good server
    over the attack window, at least 90% of the 50 frames/s they are sent;
  - the daemon's RSS stays under RSS_BOUND_MB;
  - the offender's calls get a clear status (a counted error, Refused or
    StreamEnd) and the daemon keeps running;
  - nothing the policy refuses reaches the module (the simulator prints
    every control message it gets).
Each attack's numbers are printed (pytest -s): RSS, the good calls' frames/s
and the tick lateness p99 during the attack.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import pytest

from smartstream.v1 import smartstream_pb2 as pb

from . import hostile_peer as hp
from .aiserver import AIServer
from .daemon_kit import scrape, start_daemon
from .harness import Sim, free_port

pytestmark = pytest.mark.usefixtures("mediasim")
GOOD_CALLS, BAD_CALLS = 3, 2
ATTACK_S = 2.0
WARMUP_S = 0.5
RSS_BOUND_MB = 300          # idle the daemon is ~60 MB; the attacks in issue 13 took it to 881
MIN_FPS = 0.9 * 50
GRANTED = free_port()       # the offender's grpc.aio port, granted transfer and event
RAW = free_port()           # the raw HTTP/2 offender's port


@dataclass
class Result:
    fps: float
    rss_mb: float
    p99_ms: float
    bad: Sim


@pytest.fixture(scope="module", params=["fast", "grpcio"])
def gateway(request, tmp_path_factory, mediasim):
    """One daemon per transport for every attack (each attack is new calls)."""
    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    pool = f"/dev/shm/sstest-hostile-{request.param}-{free_port()}.pool"
    d, _ = start_daemon(pool, tmp, transport=request.param, extra=(
        f'[targets."127.0.0.1:{GRANTED}"]\n'
        'allow_actions = ["hangup", "transfer", "event"]\ntransfer_allow = ["XML:default"]\n'))
    d.transport = request.param
    yield d
    d.cleanup()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def lateness_buckets(metrics: dict) -> list[tuple[float, float]]:
    out = []
    for k, v in metrics.items():
        m = re.fullmatch(r'smartstream_tick_lateness_seconds_bucket\{le="([^"]+)"\}', k)
        if m:
            out.append((float(m.group(1)), v))
    return sorted(out)


def p99_between(before: dict, after: dict) -> float:
    """Upper bound (s) of the bucket of the 99th percentile of ticks between two scrapes."""
    b = dict(lateness_buckets(before))
    delta = [(le, n - b.get(le, 0)) for le, n in lateness_buckets(after)]
    total = delta[-1][1]
    return next((le for le, n in delta if n >= 0.99 * total), float("inf")) if total else 0.0


def frames_at(server: AIServer, prefix: str) -> int:
    return sum(len(r.frames()) for uuid, recs in server.streams.items() if uuid.startswith(prefix)
               for r in recs)


async def attack(gateway, good: AIServer, offender_port: int, name: str) -> Result:
    """Good and offending calls at once; measured between warm-up and the end."""
    args = ("--seconds", str(ATTACK_S + WARMUP_S + 0.4), "--rate", "16000")
    gsim = await Sim(gateway.pool, "--calls", str(GOOD_CALLS), "--target", f"127.0.0.1:{good.port}",
                     "--uuid-prefix", f"good-{name}", *args).start()
    bsim = await Sim(gateway.pool, "--calls", str(BAD_CALLS), "--target", f"127.0.0.1:{offender_port}",
                     "--uuid-prefix", f"bad-{name}", *args).start()
    await asyncio.sleep(WARMUP_S)
    m0, f0, t0 = await scrape(gateway.admin), frames_at(good, f"good-{name}"), asyncio.get_running_loop().time()
    peak = 0.0
    while asyncio.get_running_loop().time() - t0 < ATTACK_S:
        peak = max(peak, rss_mb(gateway.proc.pid))
        await asyncio.sleep(0.1)
    m1, f1, t1 = await scrape(gateway.admin), frames_at(good, f"good-{name}"), asyncio.get_running_loop().time()
    await gsim.wait()
    await bsim.wait()
    r = Result((f1 - f0) / (t1 - t0) / GOOD_CALLS, peak, p99_between(m0, m1) * 1000, bsim)
    print(f"\nHOSTILE {gateway.transport:6} {name:24} rss {r.rss_mb:6.1f} MB  good calls "
          f"{r.fps:5.1f} frames/s  tick lateness p99 <= {r.p99_ms:g} ms")
    assert r.fps >= MIN_FPS, f"{name}: the good calls got {r.fps:.1f} frames/s"
    assert r.rss_mb < RSS_BOUND_MB, f"{name}: RSS {r.rss_mb:.0f} MB"
    assert gateway.proc.poll() is None, f"{name}: the daemon died:\n{gateway.log()[-3000:]}"
    return r


@pytest.fixture
async def raw():
    servers = []

    async def start(attack_fn, flood=None):
        s = hp.HostileServer(attack_fn, flood)
        await s.start(RAW)
        servers.append(s)
        return s
    yield start
    for s in servers:
        await s.stop()


@pytest.fixture
async def granted():
    """A grpc.aio offender on the port the daemon grants transfer and event."""
    s = AIServer()
    await s.start(GRANTED)
    yield s
    await s.stop(0)


async def errors(gateway) -> dict[str, float]:
    """Streams broken so far, by status."""
    return {k[len('smartstream_stream_errors_total{code="'):-2]: v
            for k, v in (await scrape(gateway.admin)).items()
            if k.startswith("smartstream_stream_errors_total{")}


# name: (attack, flood, the status the fast transport ends the offender's
# streams with, whether grpcio (C-core, its own names) ends them too). A
# SETTINGS or PING flood may be answered in time (the streams go on) or not
# (nghttp2 ends the connection): either way it costs only that connection.
RAW_ATTACKS = {
    "hpack_bomb": (hp.hpack_bomb, None, "RESOURCE_EXHAUSTED", True),
    "continuation_flood": (hp.continuation_flood, None, "UNAVAILABLE", True),
    "settings_flood": (hp.answer_headers, hp.settings_flood, None, False),
    "ping_flood": (hp.answer_headers, hp.ping_flood, None, False),
    "rst_flood": (hp.rst_at_once, hp.rst_flood, "CANCELLED", True),
    "window_update_overflow": (hp.window_update_overflow, None, "UNAVAILABLE", False),
    "length_4gb": (hp.length_4gb, None, "RESOURCE_EXHAUSTED", True),
    "forged_grpc_message": (hp.forged_message, None, "UNAVAILABLE", True),
}


@pytest.mark.parametrize("name", list(RAW_ATTACKS))
async def test_raw_http2_attack_costs_only_its_own_calls(gateway, server, raw, name):
    attack_fn, flood, status, grpcio_ends = RAW_ATTACKS[name]
    hostile = await raw(attack_fn, flood)
    before = await errors(gateway)
    await attack(gateway, server, hostile.port, name)
    assert hostile.connections >= 1
    after = await errors(gateway)
    broke = {code: n - before.get(code, 0) for code, n in after.items() if n > before.get(code, 0)}
    print(f"HOSTILE {gateway.transport:6} {name:24} offender's streams ended: {broke}")
    if gateway.transport == "fast" and status:
        assert broke.get(status), f"{name}: no stream ended {status}: {broke}"
    elif grpcio_ends:
        assert broke, f"{name}: no stream of the offender ended"
    if name == "forged_grpc_message":   # escaped on the line it came with, never a line of its own
        log = gateway.log().splitlines()
        assert not any(line.startswith("2026-01-01T00:00:00.000Z CRITICAL") for line in log)
        assert any("down\\n2026-01-01T00:00:00.000Z CRITICAL" in line for line in log)


def flood_of(**kw):
    return lambda rec: [rec.send(**kw) for _ in range(5000)]


GRPC_FLOODS = {
    "event_flood": (flood_of(event=pb.Event(name="spam", data={"k": "v"})), "event"),
    "mark_flood": (lambda rec: (rec.send(audio=pb.Audio(pcm=b"\0" * (1 << 20), sample_rate=16000)),
                                flood_of(mark=pb.Mark(name="m" * 200))(rec)), "mark"),
    "tiny_audio_flood": (flood_of(audio=pb.Audio(pcm=b"\0\0", sample_rate=16000)), "audio"),
}


@pytest.mark.parametrize("name", list(GRPC_FLOODS))
async def test_message_floods_are_cut_off_by_the_stream_budget(gateway, server, granted, name):
    script, kind = GRPC_FLOODS[name]
    granted.on_start = script
    before = (await scrape(gateway.admin)).get("smartstream_streams_over_budget_total", 0)
    r = await attack(gateway, server, granted.port, name)
    over = (await scrape(gateway.admin))["smartstream_streams_over_budget_total"] - before
    ends = [m.end for recs in granted.streams.values() for rec in recs for m in rec.messages
            if m.HasField("end")]
    refused = [m.refused for recs in granted.streams.values() for rec in recs for m in rec.messages
               if m.HasField("refused")]
    if kind == "event":   # 20/s with a burst of 40 reach FreeSWITCH; the rest is refused
        assert len(r.bad.messages("event")) <= BAD_CALLS * 4 * (40 + 20 * (ATTACK_S + 1))
        assert refused and all(x.code == pb.Refused.CODE_RATE_LIMITED for x in refused)
        lines = [line for line in gateway.log().splitlines()
                 if "uuid=bad-event_flood" in line and "refused event" in line]
        assert 1 <= len(lines) <= BAD_CALLS, "one line per call per 10 s, not one per event"
    assert over >= 1 and any(e.reason == pb.StreamEnd.REASON_OVER_BUDGET for e in ends)
    assert all(len(recs) >= 2 and recs[1].start.resumed for recs in granted.streams.values()), \
        "an over-budget stream is resumed"


TRANSFERS = [
    pb.Transfer(destination="system:touch\tpwned", dialplan="inline"),
    pb.Transfer(destination="1000", dialplan="inline"),
    pb.Transfer(destination="bridge:sofia/gateway/x/1", dialplan="XML", context="default"),
    pb.Transfer(destination="1000\tXML", context="default"),
    pb.Transfer(destination="1000\nXML default", context="default"),
    pb.Transfer(destination="1000 XML", context="default"),
    pb.Transfer(destination="1000", dialplan="XML", context="public"),   # not granted
    pb.Transfer(destination="1000", dialplan="system"),
    pb.Transfer(destination="", context="default"),
    pb.Transfer(destination="1" * 65, context="default"),
]


async def test_transfers_and_hangups_outside_the_grant_never_reach_the_module(gateway, server, granted):
    def script(rec):
        for t in TRANSFERS:
            rec.send(transfer=t)
        rec.send(hangup=pb.Hangup(cause="NOT_A_CAUSE"))
        rec.send(hangup=pb.Hangup(cause="16"))
        rec.send(event=pb.Event(name="bad\nname"))
        rec.send(event=pb.Event(name="deep", data={"a": nested(20)}))
        rec.send(transfer=pb.Transfer(destination="2000", context="default"))   # granted
    granted.on_start = script
    r = await attack(gateway, server, granted.port, "transfers")
    for uuid, recs in granted.streams.items():
        assert list(recs[0].start.allowed_actions) == ["hangup", "transfer", "event"]
        refused = [m.refused for m in recs[0].messages if m.HasField("refused")]
        assert [x.message for x in refused] == ["transfer"] * len(TRANSFERS) + ["hangup"] * 2 + \
            ["event"] * 2, refused
        assert {m["data"] for m in r.bad.messages("transfer", uuid)} == {"2000 XML default"}
    assert not r.bad.messages("hangup") and not r.bad.messages("event")
    # The good server was granted nothing extra: the defaults.
    assert all(list(recs[0].start.allowed_actions) == ["hangup", "event"]
               for recs in server.streams.values())


async def test_default_grant_refuses_transfer(gateway, server):
    server.on_start = lambda rec: rec.send(transfer=pb.Transfer(destination="1000"))
    sim = await Sim(gateway.pool, "--calls", "1", "--seconds", "1.5", "--target",
                    f"127.0.0.1:{server.port}", "--uuid-prefix", "nogrant").start()
    await sim.wait()
    [rec] = server.streams["nogrant-0000"]
    [refused] = [m.refused for m in rec.messages if m.HasField("refused")]
    assert refused.message == "transfer" and refused.code == pb.Refused.CODE_NOT_ALLOWED
    assert not sim.messages("transfer")


def nested(n: int):
    return {"x": nested(n - 1)} if n else 1
