"""smartstreamctl start/stop/send-payload against an event-socket peer on loopback
(tests/esl_peer.py, standing in for FreeSWITCH): every answer and every failure
has its own exit code and message."""
from __future__ import annotations

import json

import pytest

from smartstream import ctl

from .daemon_kit import ctl as run_ctl
from .daemon_kit import free_port, write_config
from .esl_peer import EslPeer

UUID = "0b2d6a3e-8f4c-4d2b-9a51-3c7e2f1d9b60"


@pytest.fixture
async def peer():
    p = await EslPeer(password="s3cret-pw", channels={UUID}).start()
    yield p
    await p.stop()


@pytest.fixture
def config(tmp_path, peer):
    return str(write_config(tmp_path / "ctl.toml", event_socket_port=peer.port,
                            event_socket_password="s3cret-pw"))


async def test_start_sends_every_option_and_prints_freeswitchs_answer(peer, config):
    meta = {"customer": "Ada Lovelace", "quote": "it's {x}", "path": "C:\\x", "n": [1, 2]}
    rc, out, err = await run_ctl("--config", config, "start", UUID, "127.0.0.1:50051",
                                 "--sample-rate", "16000", "--tracks", "both", "--tls",
                                 "--metadata", json.dumps(meta, indent=2))
    assert (rc, out.strip(), err) == (0, "+OK", "")
    # Read back by mod_ai_stream's rules, the JSON (spaces, braces and all) arrives intact.
    assert peer.commands == [(UUID, "start", {"target": "127.0.0.1:50051", "sample_rate": "16000",
                                              "tracks": "both", "tls": "true", "metadata": meta})]


async def test_send_payload_and_stop(peer, config):
    assert (await run_ctl("--config", config, "start", UUID, "asr.local:443"))[0] == 0
    rc, out, _ = await run_ctl("--config", config, "send-payload", UUID, '{"say": "hello there"}')
    assert (rc, out.strip()) == (0, "+OK")
    rc, out, _ = await run_ctl("--config", config, "stop", UUID)
    assert (rc, out.strip()) == (0, "+OK")
    assert peer.commands[1:] == [(UUID, "send_payload", '{"say":"hello there"}'), (UUID, "stop", "")]


async def test_unknown_uuid_prints_freeswitchs_reason_and_exits_5(peer, config):
    rc, out, err = await run_ctl("--config", config, "stop", "no-such-uuid")
    assert rc == ctl.FS_ERR == 5
    assert out == "" and "FreeSWITCH: no such channel no-such-uuid" in err
    rc, _, err = await run_ctl("--config", config, "send-payload", UUID, "{}")
    assert rc == 5 and "FreeSWITCH: no stream running" in err


async def test_freeswitch_unreachable_exits_3(tmp_path):
    config = write_config(tmp_path / "ctl.toml", event_socket_port=free_port())
    rc, _, err = await run_ctl("--config", str(config), "stop", UUID)
    assert rc == ctl.FS_UNREACHABLE == 3
    assert "cannot connect to FreeSWITCH's event socket at 127.0.0.1:" in err


async def test_wrong_password_exits_4(peer, tmp_path):
    config = write_config(tmp_path / "ctl.toml", event_socket_port=peer.port)  # ClueCon
    rc, _, err = await run_ctl("--config", str(config), "stop", UUID)
    assert rc == ctl.FS_AUTH == 4
    assert "refused the event-socket password (-ERR invalid)" in err
    assert peer.commands == []


async def test_environment_overrides_the_password(peer, tmp_path):
    config = write_config(tmp_path / "ctl.toml", event_socket_port=peer.port)
    rc, _, _ = await run_ctl("--config", str(config), "start", UUID, "a:1",
                             env={"SMARTSTREAM_EVENT_SOCKET_PASSWORD": "s3cret-pw"})
    assert rc == 0 and peer.commands == [(UUID, "start", {"target": "a:1"})]


@pytest.mark.parametrize("args, message", [
    (["send-payload", UUID, "{not json"], "the payload is not valid JSON"),
    (["send-payload", UUID, "[1, 2]"], "the payload must be a JSON object"),
    (["start", UUID, "a:1", "--metadata", '{"a": '], "--metadata is not valid JSON"),
    (["start", UUID, "no-port-here"], "target 'no-port-here': expected host:port"),
    (["start", UUID, "a:99999"], "port must be 1..65535"),
    (["stop", "has space"], "expected a channel uuid"),
    (["stop", UUID + "\napi shutdown"], "expected a channel uuid"),
    (["stop", "x" * 37], "expected a channel uuid"),
    (["stop", "a;b"], "expected a channel uuid"),
    (["start", UUID, "a:1\napi shutdown"], "port must be 1..65535"),
    (["send-payload", UUID, '{"a": NaN}'], "NaN is not a JSON number"),
    (["start", UUID, "a:1", "--metadata", '{"a": -Infinity}'], "-Infinity is not a JSON number"),
    (["start", UUID, "a:1", "--sample-rate", "11025"], "invalid choice: 11025"),
])
async def test_bad_arguments_exit_2_and_send_nothing(peer, config, args, message):
    rc, out, err = await run_ctl("--config", config, *args)
    assert rc == ctl.BAD_ARGS == 2
    assert message in err and out == ""
    assert peer.connections == 0 and peer.commands == []


async def test_a_wrong_config_file_exits_2_naming_the_key(tmp_path):
    config = write_config(tmp_path / "ctl.toml", event_socket_port="8021")
    rc, _, err = await run_ctl("--config", str(config), "stop", UUID)
    assert rc == 2 and "event_socket_port: expected an integer, got a string" in err


def test_help_documents_every_exit_code():
    text = ctl.parser().format_help()
    for code in (ctl.BAD_ARGS, ctl.FS_UNREACHABLE, ctl.FS_AUTH, ctl.FS_ERR, ctl.DAEMON_DOWN,
                 ctl.UNHEALTHY, ctl.NO_STREAM, ctl.FS_TIMEOUT):
        assert f"\n  {code}  " in text
