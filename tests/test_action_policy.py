"""What an AI server may make FreeSWITCH do (smartstream/actions.py) and how
the operator grants it ([targets."..."] allow_actions, transfer_allow)."""
from __future__ import annotations

import logging

import pytest

from smartstream import actions, settings
from smartstream.config import Config, TargetSettings
from smartstream.target import parse_target
from smartstream.transport import Transport
from smartstream.v1 import smartstream_pb2 as pb

GRANT = actions.ActionPolicy(("hangup", "transfer", "event"), ("XML:default", "XML:"))


@pytest.mark.parametrize("t, text", [
    (pb.Transfer(destination="1000", context="default"), b"1000 XML default"),
    (pb.Transfer(destination="+1555*#_.@-x", dialplan="XML", context="default"),
     b"+1555*#_.@-x XML default"),
    (pb.Transfer(destination="1000"), b"1000 XML"),   # "XML:": the call's own context
])
def test_granted_transfers_become_the_modules_text(t, text):
    assert GRANT.transfer(t) == (None, text)


@pytest.mark.parametrize("t, code", [
    (pb.Transfer(destination="system:touch\tpwned", dialplan="inline"), pb.Refused.CODE_INVALID),
    (pb.Transfer(destination="1000", dialplan="inline"), pb.Refused.CODE_NOT_ALLOWED),
    (pb.Transfer(destination="1000", dialplan="INLINE", context="default"), pb.Refused.CODE_NOT_ALLOWED),
    (pb.Transfer(destination="1000\nXML", context="default"), pb.Refused.CODE_INVALID),
    (pb.Transfer(destination="1000 XML", context="default"), pb.Refused.CODE_INVALID),
    (pb.Transfer(destination="", context="default"), pb.Refused.CODE_INVALID),
    (pb.Transfer(destination="1" * 65, context="default"), pb.Refused.CODE_INVALID),
    (pb.Transfer(destination="1000", context="public"), pb.Refused.CODE_NOT_ALLOWED),
    (pb.Transfer(destination="1000", context="default extra"), pb.Refused.CODE_NOT_ALLOWED),
])
def test_transfers_outside_the_grant_are_refused(t, code):
    refusal, text = GRANT.transfer(t)
    assert refusal[0] == code and text == b""


def test_the_default_grant_is_hangup_and_event():
    p = actions.ActionPolicy(TargetSettings().allow_actions, TargetSettings().transfer_allow)
    assert p.allowed == ("hangup", "event")
    assert p.transfer(pb.Transfer(destination="1000"))[0][0] == pb.Refused.CODE_NOT_ALLOWED


def test_hangup_causes_come_from_freeswitchs_table():
    assert GRANT.hangup(pb.Hangup()) == (None, b"NORMAL_CLEARING")
    assert GRANT.hangup(pb.Hangup(cause="USER_BUSY")) == (None, b"USER_BUSY")
    for cause in ("16", "NONE", "normal_clearing", "NORMAL_CLEARING\n"):
        assert GRANT.hangup(pb.Hangup(cause=cause))[0][0] == pb.Refused.CODE_INVALID


def test_events_are_bounded_in_name_size_depth_and_rate():
    def nest(n):
        return {"x": nest(n - 1)} if n else 1
    ok = pb.Event(name="intent.found", data={"a": nest(10)})
    assert GRANT.event(ok)[0] is None
    for bad in (pb.Event(name="a\nb"), pb.Event(name=""), pb.Event(name="deep", data={"a": nest(20)}),
                pb.Event(name="big", data={"a": "x" * 9000})):
        assert GRANT.event(bad)[0][0] == pb.Refused.CODE_INVALID, bad.name
    p = actions.ActionPolicy(("event",), ())
    codes = [p.event(ok)[0] for _ in range(actions.EVENT_BURST + 10)]
    assert codes[:actions.EVENT_BURST] == [None] * actions.EVENT_BURST
    assert {c[0] for c in codes[actions.EVENT_BURST:]} == {pb.Refused.CODE_RATE_LIMITED}


def load(tmp_path, text):
    (tmp_path / "s.toml").write_text(text)
    return settings.load(str(tmp_path / "s.toml"), env={})


def test_grants_are_read_and_checked_at_load(tmp_path):
    cfg = load(tmp_path, '[targets."a:1"]\nallow_actions = ["hangup", "transfer"]\n'
                         'transfer_allow = ["XML:default"]\n')
    assert cfg.targets["a:1"].allow_actions == ("hangup", "transfer")
    assert cfg.targets["a:1"].transfer_allow == ("XML:default",)
    for text, error in [
        ('allow_actions = ["shell"]', "unknown action 'shell'"),
        ('allow_actions = "hangup"', "expected an array of strings"),
        ('allow_actions = ["transfer"]\ntransfer_allow = ["inline:"]', "never inline"),
        ('allow_actions = ["transfer"]\ntransfer_allow = ["default"]', 'expected "dialplan:context"'),
        ('transfer_allow = ["XML:default"]', 'needs "transfer" in allow_actions'),
    ]:
        with pytest.raises(settings.SettingsError, match=error):
            load(tmp_path, f'[targets."a:1"]\n{text}\n')


def test_a_token_without_tls_is_refused_except_on_loopback(tmp_path):
    with pytest.raises(settings.SettingsError, match=r'targets."asr.example:443".token: needs tls'):
        load(tmp_path, '[targets."asr.example:443"]\ntoken = "s3cret"\n')
    assert load(tmp_path, '[targets."127.0.0.1:1"]\ntoken = "t"\n').targets["127.0.0.1:1"].token == "t"
    assert load(tmp_path, '[targets."a:1"]\ntls = true\ntoken = "t"\n').targets["a:1"].tls


class _Transport(Transport):
    def __init__(self, config):
        self.config = config

    def open_stream(self, target, handler, tls=False): ...

    async def close(self): ...


def test_a_target_spelled_unlike_its_tls_table_is_warned_about(caplog):
    t = _Transport(Config(targets={"localhost:50999": TargetSettings(tls=True)}))
    with caplog.at_level(logging.WARNING, "smartstream.transport"):
        assert not t.settings(parse_target("127.0.0.1:50999"), tls=False).tls
        t.settings(parse_target("127.0.0.1:50999"), tls=False)
    [record] = caplog.records   # once per spelling
    assert '[targets."localhost:50999"]' in record.getMessage()
