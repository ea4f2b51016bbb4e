#!/usr/bin/env python3
"""gRPC messages from the AI server: the bytes of each message as the HTTP/2
layer hands them over, decoded by the fast transport (transport/fast.py
_Conn.on_message: pb.ServerMessage.FromString) and handled by the Call
(call.py on_message/_handle), on one live call in a real Gateway (_gateway.py).

Input: messages, each a 2-byte big-endian length and that many bytes (the
last one takes what is left), at most 16.

Contract: nothing raises out of the handler. Each message is taken (the
call still streams), or ends the stream with a clear reason: undecodable ->
the stream is reset and the call retries; against the protocol -> the call
fails, the server gets StreamEnd(REASON_PROTOCOL, "protocol error: ...") and
the module an error naming it; Done -> the stream ends with
StreamEnd(REASON_SERVER_DONE). What reaches the module fits its ring.
"""
import json
import time

import atheris

from _common import LOGS, check, main

with atheris.instrument_imports(include=["smartstream", "google"]):
    from google.protobuf.message import DecodeError
    from smartstream import _ring
    from smartstream.v1 import smartstream_pb2 as pb
    from _gateway import LiveCall

DAEMON_TYPES = {_ring.CTL_HANGUP, _ring.CTL_TRANSFER, _ring.CTL_EVENT, _ring.CTL_MARK,
                _ring.CTL_ERROR}
LIVE = LiveCall("server_message")


def messages(data: bytes):
    i = 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 2], "big")
        yield data[i + 2:i + 2 + n]
        i += 2 + n


def check_controls(controls):
    for type_, body in controls:
        check(type_ in DAEMON_TYPES, lambda: f"control type {type_} posted to the module")
        check(len(body) <= _ring.CTL_MSG_MAX, "control message over the ring's limit")
        if type_ == _ring.CTL_EVENT:
            event = json.loads(body)
            check(isinstance(event, dict) and set(event) == {"name", "data"},
                  lambda: f"event posted as {body[:200]!r}")


async def one_input(data: bytes):
    call = await LIVE.new_call()
    conn, sid = LIVE.conn, LIVE.sid
    for n, msg in enumerate(messages(data)):
        if n == 16:
            break
        before, errors = call.state, LOGS.errors
        try:
            pb.ServerMessage.FromString(msg)
            decodable = True
        except DecodeError:
            decodable = False
        conn.on_message(sid, msg)   # anything raised here is a crash
        controls = LIVE.take_control()
        check_controls(controls)
        if before != "streaming":
            check(call.state == before, lambda: f"a {before} call became {call.state}")
            continue
        if not decodable:
            check(call.state == "retrying" and sid not in conn.streams,
                  lambda: f"undecodable message left the call {call.state}")
            check(LOGS.errors > errors, "undecodable message not logged")
        elif call.state == "failed":
            errs = [body for t, body in controls if t == _ring.CTL_ERROR]
            check(len(errs) == 1 and errs[0].startswith(b"AI server broke the protocol: ")
                  and len(errs[0]) > 30, lambda: f"protocol error reported as {controls}")
            end = LIVE.sent[-1]
            check(end.HasField("end") and end.end.reason == pb.StreamEnd.REASON_PROTOCOL
                  and end.end.detail.startswith("protocol error: "),
                  lambda: f"the server was told {end}")
        elif call.state == "ended":
            end = LIVE.sent[-1]
            check(pb.ServerMessage.FromString(msg).HasField("done") and end.HasField("end")
                  and end.end.reason == pb.StreamEnd.REASON_SERVER_DONE,
                  lambda: f"message ended the stream, the server was told {end}")
        else:
            check(call.state == "streaming", lambda: f"message left the call {call.state}")
    if call.state == "streaming":
        call.tick(time.monotonic_ns())   # playout: marks reached, TTS into the ring
        check_controls(LIVE.take_control())
    LIVE.reset_tts()


def TestOneInput(data: bytes) -> None:
    LIVE.run(one_input(data))


if __name__ == "__main__":
    main(TestOneInput)
