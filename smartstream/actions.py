"""What an AI server may make FreeSWITCH do: capabilities the operator grants
per target (TargetSettings.allow_actions, .transfer_allow), checked before a
Hangup, Transfer or Event becomes a control message for the module. The
module checks transfers and hangup causes again (csrc/ss_action.c): neither
trusts the other's text.

A check returns None (go ahead) or (Refused code, detail) for Call.refuse.
"""
from __future__ import annotations

import json
import re
import struct

from google.protobuf import json_format

from . import _ring
from .bounded_json import depth
from .budget import TokenBucket
from .v1 import smartstream_pb2 as pb

ACTIONS = ("hangup", "transfer", "event", "send_dtmf")
# Cause names of FreeSWITCH's cause table (switch_channel.c), NONE left out:
# it is what an unknown name maps to.
CAUSES = frozenset("""
UNALLOCATED_NUMBER NO_ROUTE_TRANSIT_NET NO_ROUTE_DESTINATION CHANNEL_UNACCEPTABLE
CALL_AWARDED_DELIVERED NORMAL_CLEARING USER_BUSY NO_USER_RESPONSE NO_ANSWER SUBSCRIBER_ABSENT
CALL_REJECTED NUMBER_CHANGED REDIRECTION_TO_NEW_DESTINATION EXCHANGE_ROUTING_ERROR
DESTINATION_OUT_OF_ORDER INVALID_NUMBER_FORMAT FACILITY_REJECTED RESPONSE_TO_STATUS_ENQUIRY
NORMAL_UNSPECIFIED NORMAL_CIRCUIT_CONGESTION NETWORK_OUT_OF_ORDER NORMAL_TEMPORARY_FAILURE
SWITCH_CONGESTION ACCESS_INFO_DISCARDED REQUESTED_CHAN_UNAVAIL PRE_EMPTED FACILITY_NOT_SUBSCRIBED
OUTGOING_CALL_BARRED INCOMING_CALL_BARRED BEARERCAPABILITY_NOTAUTH BEARERCAPABILITY_NOTAVAIL
SERVICE_UNAVAILABLE BEARERCAPABILITY_NOTIMPL CHAN_NOT_IMPLEMENTED FACILITY_NOT_IMPLEMENTED
SERVICE_NOT_IMPLEMENTED INVALID_CALL_REFERENCE INCOMPATIBLE_DESTINATION INVALID_MSG_UNSPECIFIED
MANDATORY_IE_MISSING MESSAGE_TYPE_NONEXIST WRONG_MESSAGE IE_NONEXIST INVALID_IE_CONTENTS
WRONG_CALL_STATE RECOVERY_ON_TIMER_EXPIRE MANDATORY_IE_LENGTH_ERROR PROTOCOL_ERROR INTERWORKING
SUCCESS ORIGINATOR_CANCEL CRASH SYSTEM_SHUTDOWN LOSE_RACE MANAGER_REQUEST BLIND_TRANSFER
ATTENDED_TRANSFER ALLOTTED_TIMEOUT USER_CHALLENGE MEDIA_TIMEOUT PICKED_OFF USER_NOT_REGISTERED
PROGRESS_TIMEOUT INVALID_GATEWAY GATEWAY_DOWN INVALID_URL INVALID_PROFILE NO_PICKUP
SRTP_READ_ERROR BOWOUT BUSY_EVERYWHERE DECLINE DOES_NOT_EXIST_ANYWHERE NOT_ACCEPTABLE UNWANTED
NO_IDENTITY BAD_IDENTITY_INFO UNSUPPORTED_CERTIFICATE INVALID_IDENTITY STALE_DATE REJECT_ALL
""".split())
# An extension, never a dialplan application: no spaces, tabs, newlines,
# colons, parentheses or quotes that "inline" or an app string would need.
DESTINATION = re.compile(r"[A-Za-z0-9+*#_.@-]{1,64}")
WORD = re.compile(r"[A-Za-z0-9_.-]{1,64}")          # a dialplan or a context
EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
EVENT_MAX_BYTES = _ring.CTL_MSG_MAX   # what one control message carries
EVENT_MAX_DEPTH = 16
EVENTS_PER_S, EVENT_BURST = 20.0, 40
# SendDtmf: FreeSWITCH's DTMF characters (w: a 500 ms pause, W: 1 s), digits
# per message, ms per digit, and digits per second a stream may send.
DTMF = re.compile(r"[0-9*#A-DwW]{1,32}")
DTMF_DEFAULT_MS, DTMF_MAX_MS = 100, 5000
DTMF_PER_S, DTMF_BURST = 10.0, 32

NOT_ALLOWED, INVALID, RATE_LIMITED = (pb.Refused.CODE_NOT_ALLOWED, pb.Refused.CODE_INVALID,
                                      pb.Refused.CODE_RATE_LIMITED)


def parse_transfer_allow(entries) -> frozenset[tuple[str, str]]:
    """"dialplan:context" entries as pairs; "XML:" (empty context) grants the
    channel's own context. ValueError names a bad entry."""
    pairs = set()
    for entry in entries:
        dialplan, sep, context = entry.partition(":")
        if (not sep or not WORD.fullmatch(dialplan) or dialplan.lower() == "inline"
                or (context and not WORD.fullmatch(context))):
            raise ValueError(f"{entry!r}: expected \"dialplan:context\" (e.g. \"XML:default\"), "
                             "letters, digits, _ . - only, never inline")
        pairs.add((dialplan, context))
    return frozenset(pairs)


class ActionPolicy:
    """One stream's grant, from its target's settings."""

    def __init__(self, allow_actions, transfer_allow):
        self.allowed = tuple(a for a in ACTIONS if a in allow_actions)
        self.transfers = parse_transfer_allow(transfer_allow)
        self.events = TokenBucket(EVENTS_PER_S, EVENT_BURST)
        self.dtmf = TokenBucket(DTMF_PER_S, DTMF_BURST)

    def grant(self, kind: str):
        return None if kind in self.allowed else (
            NOT_ALLOWED, f"{kind} is not in this stream's allowed_actions")

    def hangup(self, h: pb.Hangup):
        """(refusal or None, the control message text)."""
        cause = h.cause or "NORMAL_CLEARING"
        refusal = self.grant("hangup") or (None if cause in CAUSES else (
            INVALID, f"cause {cause[:64]!r} is not a FreeSWITCH cause name"))
        return refusal, cause.encode()

    def transfer(self, t: pb.Transfer):
        refusal = self.grant("transfer")
        if refusal:
            return refusal, b""
        dialplan = t.dialplan or "XML"
        if not DESTINATION.fullmatch(t.destination):
            return (INVALID, f"destination {t.destination[:80]!r}: 1 to 64 of "
                             "A-Z a-z 0-9 + * # _ . @ -"), b""
        if dialplan.lower() == "inline":
            return (NOT_ALLOWED, "dialplan inline is never allowed"), b""
        if (dialplan, t.context) not in self.transfers:
            return (NOT_ALLOWED, f"transfer to {dialplan[:64]!r}:{t.context[:64]!r} is not "
                                 "allowed for this target"), b""
        words = [t.destination, dialplan] + ([t.context] if t.context else [])
        return None, " ".join(words).encode()

    def event(self, e: pb.Event):
        refusal = self.grant("event")
        if refusal:
            return refusal, b""
        if not EVENT_NAME.fullmatch(e.name):
            return (INVALID, f"event name {e.name[:80]!r}: 1 to 64 of A-Z a-z 0-9 _ . : -"), b""
        if e.data.ByteSize() > 4 * EVENT_MAX_BYTES:   # JSON is never much smaller: skip the work
            return (INVALID, f"event data over {EVENT_MAX_BYTES} bytes"), b""
        if not self.events.take():
            return (RATE_LIMITED, f"over {EVENTS_PER_S:g} events/s"), b""
        try:   # NaN and infinities have no JSON: the module could not parse them
            data = json_format.MessageToDict(e.data)
            if depth(data, EVENT_MAX_DEPTH) > EVENT_MAX_DEPTH:
                return (INVALID, f"event data nested over {EVENT_MAX_DEPTH} levels"), b""
            body = json.dumps({"name": e.name, "data": data}, allow_nan=False).encode()
        except (ValueError, RecursionError) as err:
            return (INVALID, f"event data is not JSON: {err}"), b""
        if len(body) > EVENT_MAX_BYTES:
            return (INVALID, f"event of {len(body)} bytes, over {EVENT_MAX_BYTES}"), b""
        return None, body

    def send_dtmf(self, d: pb.SendDtmf):
        """The SS_CTL_SEND_DTMF record: uint32 LE ms per digit, then the digits."""
        refusal = self.grant("send_dtmf") or (
            (INVALID, f"digits {d.digits[:40]!r}: 1 to 32 of 0-9 * # A-D w W")
            if not DTMF.fullmatch(d.digits) else
            (INVALID, f"duration_ms {d.duration_ms} over {DTMF_MAX_MS}")
            if d.duration_ms > DTMF_MAX_MS else
            (RATE_LIMITED, f"over {DTMF_PER_S:g} DTMF digits/s")
            if not self.dtmf.take(len(d.digits)) else None)
        return refusal, b"" if refusal else \
            struct.pack("<I", d.duration_ms or DTMF_DEFAULT_MS) + d.digits.encode()
