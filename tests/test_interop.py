"""Interoperability: the daemon (both transports) against an AI server it
shares no code with, tests/node_server/server.js on @grpc/grpc-js, in
plaintext and over TLS; and TLS against the grpc.aio AIServer too.

Real processes on loopback: mediasim -> pool -> daemon -> gRPC -> server, and
back. TLS uses a self-signed certificate made here with the openssl CLI; the
daemon trusts it through its TOML config ([targets."127.0.0.1:PORT"]).
"""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import threading
import time
import wave
from pathlib import Path

import grpc
import numpy as np
import pytest

from smartstream.v1 import smartstream_pb2 as pb
from smartstream.v1 import smartstream_pb2_grpc as pb_grpc

from .aiserver import AIServer
from .harness import REPO, Sim

NODE_DIR = REPO / "tests" / "node_server"
pytestmark = pytest.mark.usefixtures("mediasim")


# ---- helpers shared with test_faults.py ------------------------------------------

def noise(rate: int, seconds: float, seed: int = 1) -> np.ndarray:
    """Random PCM16 without zeros: any lost, repeated or misplaced sample shows."""
    pcm = np.random.default_rng(seed).integers(-20000, 20000, int(rate * seconds), dtype="<i2")
    pcm[pcm == 0] = 1
    return pcm


def write_wav(path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def recording(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


async def until(cond, timeout: float = 15.0, what: str = "condition"):
    """Wait for cond() to hold (polling; no timing assumption but the generous bound)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def node_available() -> str | None:
    """Why the Node server cannot run, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return "tests/node_server has no node_modules: run `npm ci --prefix tests/node_server`"
    return None


class NodeProc:
    """A Node.js server (server.js or fault_server.js) as a subprocess; its JSON
    lines are collected by a thread, so any event loop may wait on them."""

    def __init__(self, script: str, *args: str):
        why = node_available()
        if why:
            pytest.fail(why)
        self.proc = subprocess.Popen(["node", str(NODE_DIR / script), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: list[dict] = []
        self._port = threading.Event()
        self.port = 0
        self._stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()
        if not self._port.wait(15):
            self.stop()
            raise RuntimeError(f"{script} did not start: {self.stderr()}")

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            if ev["event"] == "listening":
                self.port = ev["port"]
                self._port.set()
            self.events.append(ev)

    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    # -- what the server received ------------------------------------------------

    def streams(self, uuid: str) -> dict[int, list[dict]]:
        """Per stream index, the GatewayMessages (proto-loader's JSON) in order."""
        out: dict[int, list[dict]] = {}
        for ev in list(self.events):
            if ev["event"] == "message" and ev.get("uuid") == uuid:
                out.setdefault(ev["stream"], []).append(ev["msg"])
        return out

    def ended(self, uuid: str, stream: int = 0) -> bool:
        return any(ev["event"] == "end" and ev.get("uuid") == uuid and ev.get("stream") == stream
                   for ev in list(self.events))


def frames_of(msgs: list[dict], track: str = "TRACK_INBOUND") -> list[tuple[int, bytes]]:
    return [(int(m["audio"]["sequence"]), base64.b64decode(m["audio"]["pcm"]))
            for m in msgs if m["msg"] == "audio" and m["audio"]["track"] == track]


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for localhost: (cert.pem, key.pem)."""
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return str(crt), str(key)


def tls_config(path: Path, port: int, ca_file: str) -> str:
    path.write_text(f'[targets."127.0.0.1:{port}"]\ntls = true\nca_file = "{ca_file}"\n'
                    f'server_name = "localhost"\n')
    return str(path)


# ---- the tests --------------------------------------------------------------------

RATE = 16000


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
@pytest.mark.parametrize("transport", ["fast", "grpcio"])
async def test_node_server_round_trip_is_sample_exact(transport, tls, daemon, pool, cert,
                                                       tmp_path):
    src = noise(RATE, 0.73)
    write_wav(tmp_path / "in.wav", src, RATE)
    tts = noise(RATE, 1.0, seed=7)
    (tmp_path / "tts.raw").write_bytes(tts.tobytes())
    tls_args = ["--cert", cert[0], "--key", cert[1]] if tls else []
    node = NodeProc("server.js", "--port", "0", "--tts", str(tmp_path / "tts.raw"),
                    "--tts-rate", str(RATE), *tls_args)
    try:
        args = ["--transport", transport]
        if tls:
            args += ["--config", tls_config(tmp_path / "ss.toml", node.port, cert[0])]
        d = daemon(*args)
        sim = await Sim(pool, "--calls", "2", "--seconds", "2", "--rate", str(RATE),
                        "--source", str(tmp_path / "in.wav"), "--target",
                        f"127.0.0.1:{node.port}", "--uuid-prefix", "ni",
                        "--record", str(tmp_path)).start()
        summary = await sim.wait()
        assert summary["calls"] == 2
        uuids = ("ni-0000", "ni-0001")
        await until(lambda: all(node.ended(u) for u in uuids), what="both StreamEnds")
        assert not sim.messages("error"), sim.messages("error")
        for uuid in uuids:
            streams = node.streams(uuid)
            assert list(streams) == [0], f"{uuid}: expected one stream, got {list(streams)}"
            msgs = streams[0]
            kinds = [m["msg"] for m in msgs]
            assert kinds[0] == "start" and kinds[-1] == "end"
            assert set(kinds[1:-1]) == {"audio", "drained"}   # drained: the TTS played out
            start = msgs[0]["start"]
            assert start["call_uuid"] == uuid and not start["resumed"]
            assert start["sample_rate"] == RATE and start["channel_sample_rate"] == RATE
            assert msgs[-1]["end"]["reason"] == "REASON_HANGUP"
            frames = frames_of(msgs)
            assert [s for s, _ in frames] == list(range(len(frames)))
            assert len(frames) == summary["frames_written"] // 2
            got = np.frombuffer(b"".join(p for _, p in frames), dtype="<i2")
            assert np.array_equal(got, np.resize(src, len(got)))
            heard = recording(tmp_path / f"{uuid}.wav")
            first = int(np.flatnonzero(heard)[0])
            assert np.array_equal(heard[first:first + len(tts)], tts)
            assert not heard[first + len(tts):].any()
        assert d.proc.poll() is None
    finally:
        node.stop()


class TlsAIServer(AIServer):
    """tests/aiserver.py's AIServer behind grpc.ssl_server_credentials."""

    def __init__(self, cert: tuple[str, str], **kw):
        super().__init__(**kw)
        self.cert = cert

    async def start(self, port: int = 0, options=None) -> int:
        creds = grpc.ssl_server_credentials(
            [(Path(self.cert[1]).read_bytes(), Path(self.cert[0]).read_bytes())])
        self.server = grpc.aio.server(options=options)
        pb_grpc.add_AIStreamServicer_to_server(self, self.server)
        self.port = self.server.add_secure_port(f"127.0.0.1:{port}", creds)
        await self.server.start()
        return self.port


@pytest.mark.parametrize("transport", ["fast", "grpcio"])
async def test_grpc_aio_server_over_tls(transport, daemon, pool, cert, tmp_path):
    src = noise(RATE, 0.5)
    write_wav(tmp_path / "in.wav", src, RATE)
    tts = noise(RATE, 0.5, seed=3)
    server = TlsAIServer(cert)
    server.on_start = lambda rec: rec.send(audio=pb.Audio(pcm=tts.tobytes(), sample_rate=RATE))
    await server.start()
    try:
        d = daemon("--transport", transport,
                   "--config", tls_config(tmp_path / "ss.toml", server.port, cert[0]))
        sim = await Sim(pool, "--calls", "2", "--seconds", "2", "--source",
                        str(tmp_path / "in.wav"), "--target", f"127.0.0.1:{server.port}",
                        "--uuid-prefix", "at", "--record", str(tmp_path)).start()
        summary = await sim.wait()
        assert not sim.messages("error"), sim.messages("error")
        for uuid in ("at-0000", "at-0001"):
            await until(lambda: uuid in server.streams, what=f"{uuid}'s stream")
            [rec] = server.streams[uuid]
            await asyncio.wait_for(rec.done.wait(), 10)
            kinds = rec.kinds()
            assert kinds[0] == "start" and kinds[-1] == "end"
            assert set(kinds[1:-1]) == {"audio", "drained"}   # drained: the TTS played out
            frames = rec.frames()
            assert [f.sequence for f in frames] == list(range(summary["frames_written"] // 2))
            got = np.frombuffer(b"".join(f.pcm for f in frames), dtype="<i2")
            assert np.array_equal(got, np.resize(src, len(got)))
            heard = recording(tmp_path / f"{uuid}.wav")
            first = int(np.flatnonzero(heard)[0])
            assert np.array_equal(heard[first:first + len(tts)], tts)
        assert d.proc.poll() is None
    finally:
        await server.stop(0)
