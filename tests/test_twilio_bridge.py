"""The Twilio bridge against a real third-party Twilio client: a Pipecat bot
as Pipecat's docs write one (FastAPI WebSocket, parse_telephony_websocket,
FastAPIWebsocketTransport, TwilioFrameSerializer), behind the daemon and the
media simulator."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import warnings

import numpy as np
import pytest
import uvicorn
import websockets
from fastapi import FastAPI, WebSocket
from pipecat.frames.frames import InputDTMFFrame, OutputAudioRawFrame, OutputTransportMessageFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.task import PipelineParams
from pipecat.pipeline.worker import PipelineWorker
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

from smartstream import mulaw
from smartstream.twilio_bridge import twilio_handler

from .bot_kit import ScriptedBot, bot_server
from .harness import Sim, free_port
from .test_gateway_e2e import noise_wav, recording

RATE = 8000
pytestmark = pytest.mark.usefixtures("mediasim")


def test_mulaw_matches_the_reference_coder():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop   # the CCITT coder Pipecat's serializer uses
    pcm = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert mulaw.encode(pcm) == audioop.lin2ulaw(pcm, 2)
    assert mulaw.decode(bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)


class TappedTwilioSerializer(TwilioFrameSerializer):
    """Pipecat's serializer, unchanged; it only keeps each Twilio message it parses."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: list[dict] = []

    async def deserialize(self, data):
        self.events.append(json.loads(data))
        return await super().deserialize(data)


class TwilioBot:
    """A Pipecat Twilio bot app; what each session saw is kept for the asserts."""

    def __init__(self, script):
        self.script, self.sessions = script, []
        self.done = asyncio.Event()   # a session's pipeline has finished
        self.app = FastAPI()
        self.app.websocket("/ws")(self.ws)

    async def ws(self, websocket: WebSocket):
        await websocket.accept()
        _, call_data = await parse_telephony_websocket(websocket)
        serializer = TappedTwilioSerializer(
            call_data["stream_id"], call_data["call_id"],
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
        transport = FastAPIWebsocketTransport(websocket, FastAPIWebsocketParams(
            audio_in_enabled=True, audio_out_enabled=True, serializer=serializer))
        bot = self.script(call_data["stream_id"])
        self.sessions.append((call_data, serializer, bot))
        worker = PipelineWorker(Pipeline([transport.input(), bot, transport.output()]),
                                params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE))

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(transport, client):
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()
        self.done.set()


@contextlib.asynccontextmanager
async def serving(app):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await task


def tone(seconds: float, hz: float) -> np.ndarray:
    return (8000 * np.sin(2 * np.pi * hz * np.arange(int(RATE * seconds)) / RATE)).astype("<i2")


def as_heard(pcm: np.ndarray) -> np.ndarray:
    """What a mu-law hop makes of samples."""
    return np.frombuffer(mulaw.decode(mulaw.encode(pcm.tobytes())), dtype="<i2")


async def test_a_pipecat_twilio_bot_runs_behind_the_bridge(daemon, pool, tmp_path):
    greeting, story = tone(1, 440), tone(6, 660)

    def script(stream_sid):
        mark = OutputTransportMessageFrame(
            message={"event": "mark", "streamSid": stream_sid, "mark": {"name": "greeted"}})
        # Interrupt 2.5 s into the call: the greeting is heard, the story cut.
        return ScriptedBot(greeting.tobytes(), RATE, interrupt_after=125,
                           after=[mark, OutputAudioRawFrame(story.tobytes(), RATE, 1)])

    twilio = TwilioBot(script)
    daemon()
    src = noise_wav(tmp_path / "in.wav", RATE, 0.5)
    async with serving(twilio.app) as url, bot_server(twilio_handler(url, "ACtest")) as target:
        sim = await Sim(pool, "--calls", "1", "--seconds", "4", "--rate", str(RATE),
                        "--source", str(tmp_path / "in.wav"), "--target", target, "--uuid-prefix", "tw",
                        "--record", str(tmp_path), "--dtmf", "7",
                        "--metadata", '{"from_number": "+15550100", "ivr": {"lang": "en"}}').start()
        summary = await sim.wait()
        await asyncio.wait_for(twilio.done.wait(), 10)   # the bridge sent stop and closed
    [(call_data, serializer, bot)] = twilio.sessions
    # start: the ids and the call's metadata as customParameters.
    assert call_data["call_id"] == "tw-0000" and call_data["stream_id"].startswith("MZ")
    assert call_data["body"] == {"from_number": "+15550100", "ivr": '{"lang": "en"}'}
    events = serializer.events
    assert events[-1] == {"event": "stop", "sequenceNumber": events[-1]["sequenceNumber"],
                          "streamSid": call_data["stream_id"],
                          "stop": {"accountSid": "ACtest", "callSid": "tw-0000"}}
    seqs = [int(e["sequenceNumber"]) for e in events]
    assert seqs == list(range(2, 2 + len(events)))   # start was 1
    # media in: every caller frame, as Twilio's 20 ms mu-law chunks.
    media = [e["media"] for e in events if e["event"] == "media"]
    assert [m["chunk"] for m in media] == [str(i) for i in range(1, len(media) + 1)]
    assert [m["timestamp"] for m in media] == [str(20 * i) for i in range(len(media))]
    assert len(media) == summary["frames_written"]
    got = np.frombuffer(bytes(bot.caller_audio), dtype="<i2")
    assert np.array_equal(got, as_heard(np.resize(src, len(got))))
    # dtmf and the mark echoed once heard.
    assert [f.button.value for f in bot.of(InputDTMFFrame)] == ["7"]
    assert [e["mark"]["name"] for e in events if e["event"] == "mark"] == ["greeted"]
    # media out and clear: the greeting whole, then the story until the interruption.
    heard = recording(tmp_path / "tw-0000.wav")
    played = heard[heard != 0]   # silence around it, and the tone's zero crossings, left out
    said = as_heard(np.concatenate([greeting, story]))
    said = said[said != 0]
    assert np.count_nonzero(as_heard(greeting)) <= len(played) < len(said) - RATE
    assert np.array_equal(played, said[:len(played)])


async def test_bad_messages_from_a_bot_are_ignored_and_the_call_goes_on(daemon, pool, tmp_path, caplog):
    good = tone(0.5, 500)
    garbage = ["not json", "[1, 2]", '{"event": "media", "media": {"payload": "%%%"}}',
               '{"event": "mark", "mark": {"name": ""}}',
               json.dumps({"event": "mark", "mark": {"name": "x" * 300}}),
               '{"event": "media"}', '{"event": "dance"}', b"\xff\xfe binary"]
    got, closed = [], asyncio.Event()

    async def bot(ws):
        got.append(json.loads(await ws.recv()))   # connected
        got.append(json.loads(await ws.recv()))   # start
        for g in garbage:
            await ws.send(g)
        await ws.send(json.dumps({"event": "media", "media": {
            "payload": base64.b64encode(mulaw.encode(good.tobytes())).decode()}}))
        async for raw in ws:
            got.append(json.loads(raw))
        closed.set()

    daemon()
    async with websockets.serve(bot, "127.0.0.1", 0) as ws_server, \
            bot_server(twilio_handler(f"ws://127.0.0.1:{ws_server.sockets[0].getsockname()[1]}")) as target:
        sim = await Sim(pool, "--calls", "1", "--seconds", "2", "--rate", str(RATE), "--target", target,
                        "--uuid-prefix", "bad", "--record", str(tmp_path)).start()
        await sim.wait()
        await asyncio.wait_for(closed.wait(), 10)   # the bridge sent stop and closed
    assert [m["event"] for m in got[:2]] == ["connected", "start"] and got[-1]["event"] == "stop"
    assert not sim.messages("error")
    told = [r for r in caplog.records if r.name == "smartstream.twilio_bridge" and r.levelname == "WARNING"]
    assert len(told) == len(garbage), "each bad message is logged, none crashes the bridge"
    heard = recording(tmp_path / "bad-0000.wav")
    said = as_heard(good)
    assert np.array_equal(heard[heard != 0], said[said != 0])
