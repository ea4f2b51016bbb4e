"""SendDtmf's checks (actions.ActionPolicy.send_dtmf): the grant, FreeSWITCH's
DTMF characters, the duration and the per-stream rate; and the record the
module gets (SS_CTL_SEND_DTMF: uint32 LE ms per digit, then the digits)."""
import struct

from smartstream.actions import DTMF_BURST, ActionPolicy
from smartstream.v1 import smartstream_pb2 as pb


def send(policy, digits, ms=0):
    return policy.send_dtmf(pb.SendDtmf(digits=digits, duration_ms=ms))


def test_a_granted_stream_gets_the_record_for_the_module():
    p = ActionPolicy(["send_dtmf"], [])
    assert send(p, "12#A") == (None, struct.pack("<I", 100) + b"12#A")   # 0 ms: 100
    assert send(p, "9w*W", 5000) == (None, struct.pack("<I", 5000) + b"9w*W")


def test_not_granted_bad_digits_and_durations_are_refused():
    assert send(ActionPolicy(["hangup", "event"], []), "1")[0][0] == pb.Refused.CODE_NOT_ALLOWED
    p = ActionPolicy(["send_dtmf"], [])
    for digits in ("", "1x", "a", "1 2", "1" * 33, "é"):
        assert send(p, digits)[0][0] == pb.Refused.CODE_INVALID, digits
    assert send(p, "1", 5001)[0][0] == pb.Refused.CODE_INVALID


def test_digits_beyond_the_rate_are_refused():
    p = ActionPolicy(["send_dtmf"], [])
    assert send(p, "1" * DTMF_BURST)[0] is None   # a burst at once, then the average rate
    assert send(p, "1")[0][0] == pb.Refused.CODE_RATE_LIMITED
