"""A test stand-in for FreeSWITCH's event socket (mod_event_socket, inbound) on
loopback: a real TCP server speaking the real protocol. It asks for auth, checks
the password, and answers `api uuid_ai_stream ...` the way mod_ai_stream does
(+OK, or -ERR with its reason), reading the arguments by the module's rules
(freeswitch_patch/mod_ai_stream). It records every connection and api command."""
from __future__ import annotations

import asyncio
import json

from smartstream.target import TargetError, parse_target

START_KEYS = {"sample_rate": {"8000", "16000", "24000", "48000"},
              "tracks": {"inbound", "outbound", "both"}, "tls": {"true", "false"}}


def module_args(line: str) -> list[tuple[str | None, str]]:
    """mod_ai_stream's reading of `start` arguments (ais_parse): blank-separated
    tokens, key=value or one positional target; a value that starts with '{'
    runs to its matching '}' (quotes honoured), so JSON may hold spaces."""
    out, i, n = [], 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i == n:
            break
        tok, eq = i, None
        while i < n and line[i] not in " \t" and eq is None:
            eq = i if line[i] == "=" else None
            i += 1
        if eq is not None and i < n and line[i] == "{":
            depth, in_str = 0, False
            while i < n:
                c = line[i]
                if in_str:
                    if c == "\\":
                        i += 1
                    elif c == '"':
                        in_str = False
                elif c == '"':
                    in_str = True
                elif c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if not depth:
                        i += 1
                        break
                i += 1
        else:
            while i < n and line[i] not in " \t":
                i += 1
        out.append((line[tok:eq], line[eq + 1:i]) if eq is not None else (None, line[tok:i]))
    return out


class EslPeer:
    def __init__(self, password: str = "ClueCon", channels=()):
        self.password = password
        self.channels = set(channels)   # uuids that exist; others get -ERR no such channel
        self.streaming: set[str] = set()
        self.connections = 0
        self.commands: list[tuple] = []   # (uuid, verb, start's arguments as read, or the rest)
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> "EslPeer":
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, reader, writer):
        self.connections += 1

        def send(headers: dict, body: str = ""):
            if body:
                headers["Content-Length"] = str(len(body.encode()))
            writer.write(("".join(f"{k}: {v}\n" for k, v in headers.items()) + "\n" + body).encode())

        send({"Content-Type": "auth/request"})
        authed = False
        try:
            while True:
                command = (await reader.readuntil(b"\n\n")).decode().strip()
                if command.startswith("auth "):
                    authed = command[5:] == self.password
                    send({"Content-Type": "command/reply",
                          "Reply-Text": "+OK accepted" if authed else "-ERR invalid"})
                    if not authed:
                        send({"Content-Type": "text/disconnect-notice"}, "Disconnected, goodbye.\n")
                        break
                elif not authed:
                    send({"Content-Type": "command/reply", "Reply-Text": "-ERR command not found"})
                elif command.startswith("api "):
                    name, _, rest = command[4:].partition(" ")
                    send({"Content-Type": "api/response"}, self._api(name, rest))
                elif command == "exit":
                    send({"Content-Type": "command/reply", "Reply-Text": "+OK bye"})
                    break
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _api(self, name: str, args: str) -> str:
        if name != "uuid_ai_stream":
            return f"-ERR {name} Command not found!\n"
        uuid, _, rest = args.strip().partition(" ")
        verb, _, rest = rest.strip().partition(" ")
        if verb not in ("start", "stop", "send_payload", "status"):
            return f"-ERR bad arguments: unknown command '{verb}'\n"
        if uuid not in self.channels:
            return f"-ERR no such channel {uuid}\n"
        if verb == "start":
            try:
                start = self._start_args(rest)
            except ValueError as e:
                return f"-ERR bad arguments: {e}\n"
            if uuid in self.streaming:
                return "-ERR stream already running\n"
            self.streaming.add(uuid)
            self.commands.append((uuid, verb, start))
            return "+OK\n"
        self.commands.append((uuid, verb, rest))
        if verb == "send_payload" and not isinstance(json_value(rest), dict):
            return "-ERR invalid JSON: not a JSON object\n"
        if uuid not in self.streaming:
            return "-ERR no stream running\n"
        if verb == "stop":
            self.streaming.discard(uuid)
        return "+OK\n"

    @staticmethod
    def _start_args(line: str) -> dict:
        out = {}
        for key, value in module_args(line):
            if key is None:
                if "target" in out:
                    raise ValueError(f"unexpected argument '{value}' (use key=value)")
                try:
                    out["target"] = parse_target(value).authority
                except TargetError:
                    raise ValueError(f"target '{value}' is not host:port") from None
            elif key == "metadata":
                if not isinstance(json_value(value), dict):
                    raise ValueError("metadata: not a JSON object")
                out[key] = json.loads(value)
            elif key not in START_KEYS:
                raise ValueError(f"unknown key '{key}'")
            elif value not in START_KEYS[key]:
                raise ValueError(f"{key} '{value}': use one of {', '.join(sorted(START_KEYS[key]))}")
            else:
                out[key] = value
        if "target" not in out:
            raise ValueError("no target host:port (argument or ai_stream_target)")
        return out


def json_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None
