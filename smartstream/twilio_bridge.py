"""Twilio Media Streams bridge: an AIStream server that, per call, opens a
WebSocket to a bot written for Twilio and speaks Twilio's protocol to it, so
the bot runs behind SmartStream unchanged.

    python -m smartstream.twilio_bridge --listen 127.0.0.1:50051 --bot ws://127.0.0.1:8765/ws

To the bot: connected, start (streamSid, callSid = the FreeSWITCH call uuid,
customParameters = StreamStart.metadata with values as strings), media
(caller audio as 8 kHz mu-law, 20 ms chunks), dtmf, mark (a bot's mark echoed
once the caller heard what came before it, or when a clear dropped it, as
Twilio does), stop. From the bot: media, mark, clear. The bot closing its
WebSocket ends its part in the call (Done), as a Twilio <Stream> ending does.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import os
import uuid

import websockets

from smartstream import botkit, mulaw
from smartstream._resample import Resampler
from smartstream.botkit import CallStream
from smartstream.v1 import smartstream_pb2 as pb

log = logging.getLogger("smartstream.twilio_bridge")
TWILIO_RATE = 8000
FRAME_MS = 20
MARK_MAX = 256   # bytes: the gateway ends a stream whose Mark name is longer


def custom_parameters(metadata: dict) -> dict[str, str]:
    """Twilio's customParameters are strings: nested values go as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


class TwilioSession:
    """One call as a Twilio media stream to one bot connection."""

    def __init__(self, call: CallStream, ws, account_sid: str):
        self.call, self.ws, self.account_sid = call, ws, account_sid
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.seq = 0      # sequenceNumber: every message after "connected"
        self.chunk = 0    # media chunks sent
        rate = call.sample_rate
        self.resample = Resampler(rate, TWILIO_RATE) if rate != TWILIO_RATE else None

    async def _send(self, event: str, **body) -> None:
        self.seq += 1
        await self.ws.send(json.dumps({"event": event, "sequenceNumber": str(self.seq),
                                       **body, "streamSid": self.stream_sid}))

    async def open(self) -> None:
        s = self.call.start
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self._send("start", start={
            "accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": s.call_uuid,
            "tracks": ["inbound"], "customParameters": custom_parameters(self.call.metadata),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": TWILIO_RATE, "channels": 1}})

    async def to_bot(self) -> None:
        """Gateway -> bot, until the stream ends; then stop."""
        while (m := await self.call.inbox.get()) is not None:
            kind = m.WhichOneof("msg")
            if kind == "audio" and self.call.new_caller_frame(m.audio):
                await self._media(m.audio)
            elif kind == "dtmf":
                await self._send("dtmf", dtmf={"track": "inbound_track", "digit": m.dtmf.digit})
            elif kind == "mark":
                await self._send("mark", mark={"name": m.mark.name})
            elif kind == "gap":
                log.warning("call=%s: %d caller frames lost; the bot's timestamps skip them",
                            self.call.uuid, m.gap.count)
        await self._send("stop", stop={"accountSid": self.account_sid, "callSid": self.call.uuid})
        await self.ws.close()

    async def _media(self, f: pb.AudioFrame) -> None:
        pcm = self.resample(f.pcm) if self.resample else f.pcm
        self.chunk += 1
        await self._send("media", media={
            "track": "inbound", "chunk": str(self.chunk), "timestamp": str(f.sequence * FRAME_MS),
            "payload": base64.b64encode(mulaw.encode(pcm)).decode()})

    async def from_bot(self) -> None:
        """Bot -> gateway, until the bot closes its WebSocket."""
        async for raw in self.ws:
            try:
                msg = json.loads(raw)
                event = msg["event"]
                if event == "media":
                    ulaw = base64.b64decode(msg["media"]["payload"], validate=True)
                    self.call.send_audio(mulaw.decode(ulaw), TWILIO_RATE)
                elif event == "mark":
                    self._mark(str(msg["mark"]["name"]))
                elif event == "clear":
                    self.call.send(clear=pb.Clear())
                else:
                    log.warning("call=%s: bot sent unknown event %r, ignored", self.call.uuid, event)
            except (ValueError, KeyError, TypeError, binascii.Error) as e:
                log.warning("call=%s: bad message from the bot (%s: %s), ignored: %.200s",
                            self.call.uuid, type(e).__name__, e, raw)

    def _mark(self, name: str) -> None:
        if 1 <= len(name.encode()) <= MARK_MAX:
            self.call.send(mark=pb.Mark(name=name))
        else:
            log.warning("call=%s: mark name of %d bytes (1..%d), not sent, never echoed",
                        self.call.uuid, len(name.encode()), MARK_MAX)


def twilio_handler(bot_url: str, account_sid: str = "") -> botkit.Handler:
    async def handle(call: CallStream) -> None:
        try:
            async with websockets.connect(bot_url) as ws:
                session = TwilioSession(call, ws, account_sid)
                await session.open()
                to_bot = asyncio.create_task(session.to_bot())
                try:
                    await session.from_bot()
                finally:
                    to_bot.cancel()
                    await asyncio.gather(to_bot, return_exceptions=True)
        except (OSError, websockets.WebSocketException) as e:
            log.warning("call=%s: bot %s: %s", call.uuid, bot_url, e)
        # The bot is gone (or never came): the call goes on without it.
        call.send(done=pb.Done(reason="Twilio bot closed its stream"))
    return handle


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default=os.environ.get("SMARTSTREAM_BRIDGE_LISTEN", "127.0.0.1:50051"),
                   help="host:port for the gateway (default: $SMARTSTREAM_BRIDGE_LISTEN or 127.0.0.1:50051)")
    p.add_argument("--bot", required=True, help="the Twilio bot's WebSocket URL, ws:// or wss://")
    p.add_argument("--account-sid", default="", help="accountSid to put in start and stop (default empty)")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args()
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(botkit.serve(twilio_handler(a.bot, a.account_sid), a.listen))


if __name__ == "__main__":
    main()
