"""Scale-out: a target naming several AI servers (gRPC's ipv4:/dns: names)
spreads new streams round-robin across them. End to end with the daemon as a
subprocess and the media simulator; the servers listen on 127.0.0.2 and
127.0.0.3 (loopback only). dns: resolution itself is tested in-process with
getaddrinfo replaced, since no test may touch the system's resolver config."""
from __future__ import annotations

import asyncio
import socket

import grpc
import pytest

from smartstream import target as target_mod
from smartstream.target import Target, TargetError, next_address, parse_target, resolve
from smartstream.v1 import smartstream_pb2_grpc as pb_grpc

from .aiserver import AIServer
from .daemon_kit import until
from .harness import Daemon, Sim, free_port

HOSTS = ("127.0.0.2", "127.0.0.3")


class BoundAIServer(AIServer):
    """tests.aiserver.AIServer listening on given loopback addresses (one port)."""

    def __init__(self, *hosts: str):
        super().__init__()
        self.hosts = hosts
        self.host = hosts[0]

    async def start(self, port: int = 0, options=None) -> int:
        self.server = grpc.aio.server(options=options)
        pb_grpc.add_AIStreamServicer_to_server(self, self.server)
        for host in self.hosts:
            bound = self.server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
            if not bound:
                raise OSError(f"cannot listen on {host}:{port}")
            port = bound
        self.port = port
        await self.server.start()
        return self.port


@pytest.fixture
async def servers():
    started = []
    for host in HOSTS:
        s = BoundAIServer(host)
        await s.start()
        started.append(s)
    yield started
    for s in started:
        await s.stop(0)


@pytest.mark.usefixtures("mediasim")
@pytest.mark.parametrize("transport", ["fast", "grpcio"])
async def test_new_streams_alternate_between_two_servers(transport, servers, pool, tmp_path):
    a, b = servers
    name = f"ipv4:{a.host}:{a.port},{b.host}:{b.port}"
    daemon = Daemon(pool, tmp_path, "--transport", transport).start()
    try:
        sim = await Sim(pool, "--calls", "6", "--seconds", "1", "--source", "tone",
                        "--target", name, "--uuid-prefix", "rr").start()
        summary = await sim.wait()
        await asyncio.sleep(0.3)
        log = daemon.log()
    finally:
        daemon.cleanup()
    assert summary["calls"] == 6
    got_a, got_b = set(a.streams), set(b.streams)
    assert len(got_a) == 3 and len(got_b) == 3, (got_a, got_b, log[-3000:])
    assert got_a | got_b == {f"rr-{i:04d}" for i in range(6)}
    for s in servers:   # every stream whole: start, audio, end
        for recs in s.streams.values():
            assert len(recs) == 1
            kinds = recs[0].kinds()
            assert kinds[0] == "start" and kinds[-1] == "end" and "audio" in kinds
    # one connection per address, not per stream
    assert log.count("new connection to") == 2, log[-3000:]


@pytest.mark.usefixtures("mediasim")
@pytest.mark.parametrize("transport", ["fast", "grpcio"])
async def test_rolling_restart_of_both_servers_loses_no_frame(transport, servers, pool, tmp_path):
    # Each replica in turn stops gracefully (GOAWAY, then its streams end) and
    # comes back on the same address while 50 calls go on: their streams move
    # to the other replica, resumed, and every frame of every call arrives.
    # Each step waits for a condition, not for a time: a loaded machine is only slower.
    calls, seconds = 50, 10
    a, b = servers
    name = f"ipv4:{a.host}:{a.port},{b.host}:{b.port}"
    streams = lambda: [r for s in (a, b) for recs in s.streams.values() for r in recs]  # noqa: E731

    async def all_live() -> bool:   # every call has a stream that is carrying audio
        return len({r.uuid for r in streams() if not r.done.is_set() and r.frames()}) == calls

    async def all_ended() -> bool:
        return all(r.done.is_set() for r in streams())

    daemon = Daemon(pool, tmp_path, "--transport", transport, slots=calls).start()
    restarted = []
    try:
        sim = await Sim(pool, "--calls", str(calls), "--seconds", str(seconds), "--source",
                        "pattern", "--target", name, "--uuid-prefix", "roll").start()
        for old in (a, b):
            await until(all_live, f"all {calls} calls streaming before {old.host} stops", 30)
            await old.stop(0.5)
            new = BoundAIServer(old.host)
            new.streams = old.streams
            await new.start(old.port)
            restarted.append(new)
        summary = await sim.wait()
        await until(all_ended, "every stream ended", 30)
    finally:
        daemon.cleanup()
        for s in restarted:
            await s.stop(0)
    n = summary["frames_written"] // calls
    moved = 0
    for i in range(calls):
        recs = a.streams.get(f"roll-{i:04d}", []) + b.streams.get(f"roll-{i:04d}", [])
        got = {f.sequence for rec in recs for f in rec.frames()}
        assert got == set(range(n)), (i, sorted(set(range(n)) - got)[:10])
        assert not [g for rec in recs for g in rec.gaps()]
        moved += len(recs) > 1
    print(f"{transport}: {calls} calls, {moved} moved at least once, no frame lost")
    assert moved == calls   # b stopped while every call was live, so each moved


@pytest.mark.usefixtures("mediasim")
@pytest.mark.parametrize("transport", ["fast", "grpcio"])
async def test_dns_name_through_the_daemon(transport, pool, tmp_path):
    """dns:///localhost:PORT from the slot: resolved by the daemon, one
    connection per address it resolves to, every call streamed."""
    port = free_port()
    addrs = sorted({ai[4][0] for ai in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)
                    if ai[0] in (socket.AF_INET, socket.AF_INET6)})
    server = BoundAIServer(*addrs)
    try:
        await server.start(port)
    except OSError as e:
        pytest.skip(f"cannot listen on every address of localhost: {e}")
    daemon = Daemon(pool, tmp_path, "--transport", transport).start()
    try:
        sim = await Sim(pool, "--calls", "4", "--seconds", "1", "--source", "tone",
                        "--target", f"dns:///localhost:{port}", "--uuid-prefix", "dn").start()
        summary = await sim.wait()
        await asyncio.sleep(0.3)
        log = daemon.log()
    finally:
        daemon.cleanup()
        await server.stop(0)
    assert summary["calls"] == 4
    assert set(server.streams) == {f"dn-{i:04d}" for i in range(4)}, log[-3000:]
    assert log.count("new connection to") == len(addrs), log[-3000:]


# -- parsing ----------------------------------------------------------------------

@pytest.mark.parametrize("text,canon,addrs", [
    ("dns:///ai:50051", "dns:///ai:50051", None),
    ("dns:ai:50051", "dns:///ai:50051", None),
    ("dns:///ai", "dns:///ai:443", None),
    ("DNS:///ai.example.internal:7", "dns:///ai.example.internal:7", None),
    ("ipv4:127.0.0.2:50051,127.0.0.3:50052", "ipv4:127.0.0.2:50051,127.0.0.3:50052",
     [("127.0.0.2", 50051), ("127.0.0.3", 50052)]),
    ("ipv4:10.0.0.1", "ipv4:10.0.0.1:443", [("10.0.0.1", 443)]),
    ("ipv6:[::1]:50051,[::2]:50051", "ipv6:[::1]:50051,[::2]:50051",
     [("::1", 50051), ("::2", 50051)]),
    ("ipv6:::1", "ipv6:[::1]:443", [("::1", 443)]),
])
def test_named_targets(text, canon, addrs):
    t = parse_target(text)
    assert t.authority == canon and str(t) == canon and t.balanced
    assert parse_target(canon) == t   # the canonical text parses back the same
    if addrs is not None:
        assert [(x.host, x.port) for x in t.addresses] == addrs
        assert resolve(t) == t.addresses


def test_host_port_is_unchanged():
    t = parse_target("127.0.0.1:50051")
    assert t == Target("127.0.0.1", 50051) and not t.balanced
    assert resolve(t) == (t,) and next_address(t) is t
    # a host called "dns" is still a host
    assert parse_target("dns:50051") == Target("dns", 50051)


@pytest.mark.parametrize("text,why", [
    ("dns://8.8.8.8/ai:50051", "DNS server"),
    ("dns:///ai:0", "port must be"),
    ("dns:///bad_name!:1", "not a host name"),
    ("ipv4:ai.example:50051", "not an IPv4 address"),
    ("ipv4:127.0.0.1:1,,127.0.0.2:1", "expected ipv4:"),
    ("ipv4:", "expected ipv4:"),
    ("ipv6:[nope]:1", "not an IPv6 address"),
    ("unix:/run/ai.sock", "not supported"),
])
def test_bad_named_targets_say_why(text, why):
    with pytest.raises(TargetError, match=why):
        parse_target(text)


# -- dns: resolution (getaddrinfo replaced) ---------------------------------------

@pytest.fixture
def fake_dns(monkeypatch):
    answers = {}
    calls = []

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port) if ":" not in ip else (ip, port, 0, 0)) for ip in answers[host]]
    monkeypatch.setattr(target_mod.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(target_mod, "_cache", {})
    monkeypatch.setattr(target_mod, "_turn", {})
    return answers, calls


def test_dns_round_robin_over_every_address(fake_dns):
    answers, _ = fake_dns
    answers["ai"] = ["127.0.0.3", "127.0.0.2", "127.0.0.3"]   # order and duplicates vary
    t = parse_target("dns:///ai:50051")
    picks = [next_address(t).authority for _ in range(6)]
    assert picks == ["127.0.0.2:50051", "127.0.0.3:50051"] * 3


def test_dns_answer_is_cached_briefly(fake_dns, monkeypatch):
    answers, calls = fake_dns
    answers["ai"] = ["127.0.0.2"]
    t = parse_target("dns:///ai:50051")
    assert resolve(t, now=100.0) == (Target("127.0.0.2", 50051),)
    answers["ai"] = ["127.0.0.2", "127.0.0.3"]
    assert resolve(t, now=101.0) == (Target("127.0.0.2", 50051),)   # cached
    assert len(calls) == 1
    later = 100.0 + target_mod.RESOLVE_TTL_S + 0.1
    assert resolve(t, now=later) == (Target("127.0.0.2", 50051), Target("127.0.0.3", 50051))


def test_dns_failure_keeps_last_answer_or_tries_the_name(fake_dns):
    answers, _ = fake_dns
    t = parse_target("dns:///gone:50051")
    # never resolved: the name itself, so connecting fails UNAVAILABLE and the call retries
    assert resolve(t, now=0.0) == (Target("gone", 50051),)
    answers["gone"] = ["127.0.0.2"]
    later = target_mod.RESOLVE_TTL_S + 1
    assert resolve(t, now=later) == (Target("127.0.0.2", 50051),)
    del answers["gone"]
    assert resolve(t, now=later * 3) == (Target("127.0.0.2", 50051),)   # last answer kept


def test_ipv6_answers_are_used(fake_dns):
    answers, _ = fake_dns
    answers["ai6"] = ["::1", "127.0.0.2"]
    t = parse_target("dns:///ai6:50051")
    assert {a.authority for a in resolve(t)} == {"[::1]:50051", "127.0.0.2:50051"}


def test_round_robin_is_per_target_name(fake_dns):
    a = parse_target("ipv4:127.0.0.2:1,127.0.0.3:1")
    b = parse_target("ipv4:127.0.0.2:2,127.0.0.3:2")
    assert next_address(a).host == "127.0.0.2"
    assert next_address(b).host == "127.0.0.2"
    assert next_address(a).host == "127.0.0.3"
