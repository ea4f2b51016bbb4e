"""A minimal client of FreeSWITCH's event socket (mod_event_socket, inbound):
authenticate, run `api` commands, read their answers.

A message is header lines ("Name: value"), a blank line, then Content-Length
bytes of body if that header is there.

Not genesis, the maintained asyncio ESL client on PyPI (version 2026.10.18, read):
7,700 lines pulling in FastAPI, uvicorn, Redis, OpenTelemetry, typer and rich;
it writes a command with CR/LF in it as is (an injected command), has no
deadline on a reply, only on connecting, and takes any Content-Length. These
lines are all smartstreamctl needs, with those three guarded.
"""
from __future__ import annotations

import asyncio

from .target import is_number

CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 10.0   # per exchange: the reply, and whatever events come before it
MAX_HEADERS = 64
MAX_BODY = 1 << 20   # far above any api reply; a peer claiming more is not FreeSWITCH


class EslError(Exception):
    """Base of what can go wrong talking to FreeSWITCH."""


class Unreachable(EslError):
    """No event socket there, it hung up, or it does not speak the protocol."""


class AuthFailed(EslError):
    """The event socket refused the password."""


class TimedOut(EslError):
    """FreeSWITCH did not answer within the exchange's deadline."""


class BadLine(EslError):
    """What we were asked to send would break the protocol's line framing."""


class CommandFailed(EslError):
    """FreeSWITCH ran the command and answered -ERR (or -USAGE); str() is its reason."""


class Message:
    def __init__(self, headers: dict[str, str], body: str):
        self.headers, self.body = headers, body

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str,
                 timeout: float):
        self._reader, self._writer, self.where, self.timeout = reader, writer, where, timeout

    @classmethod
    async def open(cls, host: str, port: int, password: str,
                   timeout: float = REPLY_TIMEOUT_S) -> "Connection":
        where = f"{host}:{port}"
        one_line(password, "the event-socket password")   # before anything is sent
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                    CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as e:
            raise Unreachable(f"cannot connect to FreeSWITCH's event socket at {where}: "
                              f"{e.strerror if isinstance(e, OSError) else 'timed out'}") from None
        conn = cls(reader, writer, where, timeout)
        try:
            await conn._expect("auth/request")
            reply = await conn._send(f"auth {password}", "command/reply")
        except EslError:
            conn.close()
            raise
        if not reply.headers.get("Reply-Text", "").startswith("+OK"):
            conn.close()
            raise AuthFailed(f"FreeSWITCH at {where} refused the event-socket password "
                             f"({reply.headers.get('Reply-Text', 'no reply text')})")
        return conn

    async def api(self, command: str) -> str:
        """Run `api <command>`; its output, or CommandFailed with FreeSWITCH's reason."""
        one_line(command, "an api command")
        body = (await self._send(f"api {command}", "api/response")).body.strip()
        if body.startswith("-"):
            reason = body[5:] if body.startswith("-ERR ") else body[1:]
            raise CommandFailed(reason.strip() or body)
        return body

    def close(self) -> None:
        self._writer.close()

    async def _send(self, command: str, answer_type: str) -> Message:
        self._writer.write(f"{command}\n\n".encode())
        return await self._expect(answer_type)

    async def _expect(self, content_type: str) -> Message:
        """The next message of that type; events and notices we did not ask for are
        skipped, within one deadline: a stream of them cannot hold us forever."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            msg = await self._read(deadline)
            if msg.content_type == content_type:
                return msg
            if msg.content_type == "text/rude-rejection":   # its ACL does not let us in
                raise Unreachable(f"FreeSWITCH at {self.where} refused the connection: "
                                  f"{msg.body.strip()}")
            if msg.content_type == "text/disconnect-notice":
                raise Unreachable(f"FreeSWITCH at {self.where} hung up")

    async def _read(self, deadline: float) -> Message:
        left = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(self._read_message(), max(left, 0))
        except asyncio.TimeoutError:
            raise TimedOut(f"FreeSWITCH at {self.where} did not answer within "
                           f"{self.timeout:g} s") from None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise Unreachable(f"FreeSWITCH at {self.where} closed the connection") from None
        except asyncio.LimitOverrunError:
            raise Unreachable(f"{self.where} does not speak the event-socket protocol") from None

    async def _read_message(self) -> Message:
        headers: dict[str, str] = {}
        while True:
            line = (await self._reader.readuntil(b"\n")).decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if headers:
                    break
                continue   # blank lines between messages
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
            if len(headers) > MAX_HEADERS:
                raise Unreachable(f"{self.where} does not speak the event-socket protocol")
        length = headers.get("Content-Length", "0")
        if not is_number(length) or int(length) > MAX_BODY:
            raise Unreachable(f"{self.where} sent a bad Content-Length: {length!r}")
        body = await self._reader.readexactly(int(length)) if int(length) else b""
        return Message(headers, body.decode("utf-8", "replace"))


def one_line(text: str, what: str) -> str:
    """The event socket ends a command at a line break: one inside would start another."""
    if "\n" in text or "\r" in text:
        raise BadLine(f"{what} contains a line break (CR or LF): refused, nothing sent")
    return text
