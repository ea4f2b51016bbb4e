"""smartstreamctl against event sockets that misbehave (issue 19): one that never
answers but keeps sending events, one whose replies carry terminal escape
sequences; and what it refuses to put on the wire (CR/LF anywhere, the password
included)."""
from __future__ import annotations

import asyncio

import pytest

from smartstream import ctl

from .daemon_kit import ctl as run_ctl
from .daemon_kit import write_config
from .esl_peer import EslPeer

UUID = "0b2d6a3e-8f4c-4d2b-9a51-3c7e2f1d9b60"
BODY = b"Event-Name: HEARTBEAT\nCore-UUID: 1234\n\n"
EVENT = b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(BODY), BODY)


class Chatty:
    """An event socket that asks for auth, then answers nothing past `answers`
    commands: it only sends unrelated events, one every 10 ms, forever."""

    def __init__(self, answers: int):
        self.answers, self.commands, self.port = answers, [], 0

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._server.close()

    async def _session(self, reader, writer):
        writer.write(b"Content-Type: auth/request\n\n")
        try:
            while True:
                self.commands.append((await reader.readuntil(b"\n\n")).decode().strip())
                if len(self.commands) > self.answers:
                    break
                writer.write(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
            while True:
                writer.write(EVENT)
                await writer.drain()
                await asyncio.sleep(0.01)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("answers, stage", [(0, "auth"), (1, "api")])
async def test_an_event_socket_that_never_answers_times_out_with_exit_9(tmp_path, answers, stage):
    async with Chatty(answers) as peer:
        config = write_config(tmp_path / "ctl.toml", event_socket_port=peer.port,
                              event_socket_timeout_s=0.5)
        rc, out, err = await run_ctl("--config", str(config), "stop", UUID)
    assert rc == ctl.FS_TIMEOUT == 9, err
    assert f"FreeSWITCH at 127.0.0.1:{peer.port} did not answer within 0.5 s" in err
    assert peer.commands[-1].startswith(stage) and out == ""


class Rude(EslPeer):
    """FreeSWITCH's answer with escape sequences in it (a hostile or broken peer)."""

    def _api(self, name, args):
        return "-ERR \x1b]0;owned\x07\x1b[2J gone\r\n" if "stop" in args else "+OK \x1b[31mred\n"


async def test_escape_sequences_in_replies_are_printed_escaped(tmp_path):
    peer = await Rude(channels={UUID}).start()
    try:
        config = str(write_config(tmp_path / "ctl.toml", event_socket_port=peer.port))
        rc, out, _ = await run_ctl("--config", config, "send-payload", UUID, "{}")
        assert (rc, out) == (0, "+OK \\x1b[31mred\n")
        rc, _, err = await run_ctl("--config", config, "stop", UUID)
        assert rc == ctl.FS_ERR
        assert "FreeSWITCH: \\x1b]0;owned\\x07\\x1b[2J gone" in err and "\x1b" not in err
    finally:
        await peer.stop()


@pytest.fixture
async def peer():
    p = await EslPeer(channels={UUID}).start()
    yield p
    await p.stop()


@pytest.mark.parametrize("password", ["ClueCon\napi shutdown", "ClueCon\r", "\nClueCon"])
async def test_a_password_with_a_line_break_is_refused_before_connecting(peer, tmp_path, password):
    config = write_config(tmp_path / "ctl.toml", event_socket_port=peer.port)
    rc, _, err = await run_ctl("--config", str(config), "stop", UUID,
                               env={"SMARTSTREAM_EVENT_SOCKET_PASSWORD": password})
    assert rc == ctl.BAD_ARGS, err
    assert "the event-socket password contains a line break" in err
    assert peer.connections == 0


async def test_line_breaks_in_json_strings_go_out_escaped(peer, tmp_path):
    config = write_config(tmp_path / "ctl.toml", event_socket_port=peer.port)
    rc, _, err = await run_ctl("--config", str(config), "start", UUID, "a:1",
                               "--metadata", '{"note": "line one\\r\\napi shutdown"}')
    assert rc == 0, err
    assert peer.commands == [(UUID, "start", {"target": "a:1",
                                              "metadata": {"note": "line one\r\napi shutdown"}})]
