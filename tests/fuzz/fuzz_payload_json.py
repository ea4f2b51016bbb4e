#!/usr/bin/env python3
"""send_payload JSON: the text `uuid_ai_stream <uuid> send_payload <json>`
hands to the module, which posts it as is on the slot's ctl_in ring
(CTL_PAYLOAD). The daemon drains it in its tick (Gateway._drain -> Router ->
Call.on_control) and turns it into a protobuf Struct, on one live call in a
real Gateway (_gateway.py).

Input: the text, cut to the ring's CTL_MSG_MAX as the module would refuse more.

Contract: nothing raises out of the tick. A JSON object that a Struct can
hold -> exactly one Payload message on the stream, with the object's keys.
Anything else -> no message, the bad_payload counter +1, an error logged and
"send_payload rejected: <why>" posted back to the module. The call streams on.
"""
import json
import time

import atheris

from _common import LOGS, check, main

with atheris.instrument_imports(include=["smartstream", "google", "json"]):
    from google.protobuf import struct_pb2
    from smartstream import _ring
    from _gateway import LiveCall

LIVE = LiveCall("payload_json")


def walk(value, depth: int = 0) -> tuple[int, int]:
    """(deepest nesting, most bits in an integer) of a parsed value."""
    if isinstance(value, (dict, list)):
        deepest, bits = depth, 0
        for v in (value.values() if isinstance(value, dict) else value):
            d, b = walk(v, depth + 1)
            deepest, bits = max(deepest, d), max(bits, b)
        return deepest, bits
    if isinstance(value, int) and not isinstance(value, bool):
        return depth, value.bit_length()
    return depth, 0


def depth_feedback(n: int) -> None:
    for _ in range(n):   # this edge taken n times: libFuzzer's hit-count buckets see n grow
        pass


def bits_feedback(n: int) -> None:
    for _ in range(n):
        pass


def feedback(value) -> None:
    """json and protobuf are C, so their branches are not seen; this makes
    an input that nests deeper, or holds a bigger integer, than the ones
    before it new coverage, and kept."""
    deepest, bits = walk(value)
    depth_feedback(deepest)
    bits_feedback(bits // 16)


def as_struct(data: bytes):
    """The object if the text is a JSON object a Struct can hold, else None."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    feedback(obj)
    if not isinstance(obj, dict):
        return None
    try:
        s = struct_pb2.Struct()
        s.update(obj)
        struct_pb2.Struct.FromString(s.SerializeToString())   # what copying it into a message does
    except Exception:
        return None
    return obj


async def one_input(data: bytes):
    data = data[:_ring.CTL_MSG_MAX]
    call = await LIVE.new_call()
    dropped, errors = LIVE.dropped("bad_payload"), LOGS.errors
    LIVE.ms.post(_ring.CTL_PAYLOAD, data)
    LIVE.gw._drain(time.monotonic_ns())   # anything raised here is a crash
    sent, controls = LIVE.sent, LIVE.take_control()
    check(call.state == "streaming", lambda: f"a payload left the call {call.state}")
    obj = as_struct(data)
    if sent:
        check(len(sent) == 1 and sent[0].HasField("payload") and not controls,
              lambda: f"a payload became {sent} and {controls}")
        check(obj is not None, lambda: f"not a JSON object a Struct holds, yet sent: {data[:200]!r}")
        check(set(sent[0].payload.data.fields) == set(obj), "payload keys differ from the object's")
    else:
        check(obj is None, lambda: f"JSON object not sent: {data[:200]!r}")
        check(LIVE.dropped("bad_payload") == dropped + 1, "rejected payload not counted")
        check(LOGS.errors > errors, "rejected payload not logged")
        check(len(controls) == 1 and controls[0][0] == _ring.CTL_ERROR
              and controls[0][1].startswith(b"send_payload rejected: "),
              lambda: f"the module was told {controls}")


def TestOneInput(data: bytes) -> None:
    LIVE.run(one_input(data))


if __name__ == "__main__":
    main(TestOneInput)
