#!/usr/bin/env python3
"""Bytes from the AI server into the fast transport's HTTP/2 connection
(smartstream._h2.H2Connection, i.e. nghttp2 plus our gRPC framing).

Input: byte 0 says how to feed it (bit 7: the rest is frames in the compact
form below, else raw wire bytes; bit 6: the server hangs up at the end;
bits 0-5: chunk size for data_received, 0 = all at once), byte 1 how many
streams are open (1 + b % 4), the rest the server's bytes. The compact form
is records [type][flags][stream][kind][n][n bytes], sent after the server
preface: a frame with a correct length whose payload is the n bytes (kind
0), a gRPC message of them (1), a header block (2) or a valid gRPC
ServerMessage (3), so mutations stay deep in the protocol rather than dying
in the preface.

Contract (as tests/test_h2_connection.py test_fuzz_inbound): the connection
is either still open with nothing lost, or closed with every stream reported
closed exactly once and the loss reported once; no handler is told anything
out of order; nothing raises out of data_received/flush/connection_lost.
"""
import sys

import atheris

from _common import check, main

with atheris.instrument_imports(include=["smartstream", "tests"]):
    from smartstream._h2 import H2Connection
    from tests.test_h2_connection import (
        HEADER_BLOCKS, PATH, SERVER_PREFACE, Recorder, RecordingTransport, frame, grpc_message)
    from smartstream.v1 import smartstream_pb2 as pb

SIDS = [1, 3, 5, 7, 0, 2, 9, 0x7FFFFFFF]
MESSAGES = [m.SerializeToString() for m in (
    pb.ServerMessage(audio=pb.Audio(pcm=b"\x01\x02" * 8, sample_rate=16000)),
    pb.ServerMessage(mark=pb.Mark(name="m1")),
    pb.ServerMessage(clear=pb.Clear()),
    pb.ServerMessage(hangup=pb.Hangup(cause="NORMAL_CLEARING")),
    pb.ServerMessage())]
BLOCKS = HEADER_BLOCKS + [b"\x88", b""]


class Checked(Recorder):
    """The tests' Recorder, whose order assertions H2Connection would catch
    and log (a handler that raises resets its stream): kept here instead."""

    def __init__(self):
        super().__init__()
        self.sids = set()
        self.violations = []

    def _checked(self, method, *args):
        try:
            method(*args)
        except AssertionError as e:
            self.violations.append(str(e))
            raise

    def on_message(self, sid, data):
        if sid not in self.sids:
            self.violations.append(f"message for stream {sid}, never opened")
        self._checked(super().on_message, sid, data)   # DecodeError: a reset, as in production

    def on_stream_closed(self, sid, status, message):
        if sid not in self.sids:
            self.violations.append(f"close of stream {sid}, never opened")
        if not isinstance(message, str) or not 0 <= status <= 16:
            self.violations.append(f"stream {sid} closed with {status!r} {message!r}")
        self._checked(super().on_stream_closed, sid, status, message)

    def on_connection_lost(self, reason):
        if self.lost:
            self.violations.append(f"connection lost twice: {self.lost[0]!r}, {reason!r}")
        self._checked(super().on_connection_lost, reason)


def compact(data: bytes) -> bytes:
    out, i = bytearray(), 0
    while i + 5 <= len(data):
        ftype, flags, sid, kind, n = data[i:i + 5]
        payload = data[i + 5:i + 5 + n]
        i += 5 + n
        kind %= 4
        if kind == 1:
            payload = grpc_message(payload)
        elif kind == 2:
            payload = BLOCKS[n % len(BLOCKS)]
            i -= n   # the n bytes were not used
        elif kind == 3:
            payload = grpc_message(MESSAGES[n % len(MESSAGES)])
            i -= n
        out += frame(ftype % 12 if ftype < 0xF0 else ftype, flags, SIDS[sid % len(SIDS)],
                     payload)
    return SERVER_PREFACE + bytes(out) + data[i:]


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, nstreams = data[0], 1 + data[1] % 4
    wire = compact(data[2:]) if mode & 0x80 else data[2:]
    chunk = (mode & 0x3F) or max(len(wire), 1)
    rec, tr = Checked(), RecordingTransport()
    conn = H2Connection("test:1", "http", rec)
    sids = [conn.open_stream(PATH, []) for _ in range(nstreams)]
    rec.sids.update(sids)
    conn.connection_made(tr)
    for i in range(0, len(wire), chunk):
        conn.data_received(wire[i:i + chunk])
    conn.flush()
    if mode & 0x40:
        conn.connection_lost(None)
    check(not rec.violations, lambda: f"handler told out of order: {rec.violations}")
    if conn.is_open:
        check(not tr.closed and not rec.lost, "open, yet the transport closed or loss reported")
    else:
        check(tr.closed and len(rec.lost) == 1 and conn.open_streams == 0,
              lambda: f"closed: transport closed {tr.closed}, lost {rec.lost}, "
                      f"{conn.open_streams} streams open")
        check(set(rec.closed) == set(sids), lambda: f"closed {sorted(rec.closed)} of {sids}")
        check(rec.lost[0], "connection lost without a reason")
    check(conn.open_streams + len(rec.closed) == len(sids),
          lambda: f"{conn.open_streams} open + {len(rec.closed)} closed != {len(sids)} streams")


if __name__ == "__main__":
    main(TestOneInput)
