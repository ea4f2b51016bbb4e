import re

import pytest

from smartstream.target import Target, TargetError, parse_target


@pytest.mark.parametrize("text,host,port", [
    ("127.0.0.1:50051", "127.0.0.1", 50051),
    ("ai.example.internal:443", "ai.example.internal", 443),
    ("[::1]:50051", "::1", 50051),
    ("localhost:1", "localhost", 1),
])
def test_valid_targets(text, host, port):
    t = parse_target(text)
    assert t == Target(host, port)
    assert parse_target(t.authority) == t


@pytest.mark.parametrize("text,why", [
    ("", "expected host:port"),
    ("no port here", "expected host:port"),
    ("host:", "port must be"),
    ("host:0", "port must be"),
    ("host:65536", "port must be"),
    (":50051", "expected host:port"),
    ("bad_host!:80", "not a host name"),
    ("[::1]50051", "expected [ipv6]:port"),
    ("[nope]:80", "not an IPv6 address"),
    ("a" * 300 + ":1", "expected host:port"),
    ("host:5²", "port must be"),               # a digit to str.isdigit(), not to int()
    ("asr\n:50051", "not a host name"),        # would end an event-socket command line
    ("dns:///asr\n:50051", "not a host name"),
])
def test_invalid_targets_say_why(text, why):
    with pytest.raises(TargetError, match=re.escape(why)):
        parse_target(text)
