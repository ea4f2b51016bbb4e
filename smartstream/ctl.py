"""`smartstreamctl`: start, stop and steer AI streams, and see what the gateway does.

start, stop and send-payload run `uuid_ai_stream` in FreeSWITCH through its
event socket (event_socket_host, _port, _password in the config file, or
SMARTSTREAM_EVENT_SOCKET_HOST, _PORT, _PASSWORD). list, status and health ask
the gateway daemon at its admin endpoint (admin_listen, SMARTSTREAM_ADMIN_LISTEN).
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import sys

from . import esl, settings
from .call import AI_RATES
from .target import TargetError, parse_target

EPILOG = """exit status:
  0  done
  2  bad arguments, invalid JSON, a target that is not host:port, or a wrong config file
  3  FreeSWITCH unreachable: nothing at the event socket, it hung up, or it refused us (ACL)
  4  FreeSWITCH refused the event-socket password
  5  FreeSWITCH answered -ERR (e.g. no such channel); its reason is printed
  6  the gateway daemon is not running, or not at admin_listen
  7  the gateway daemon answers but is unhealthy (its ticker stopped)
  8  status <uuid>: the daemon has no stream for that call
  9  FreeSWITCH did not answer within event_socket_timeout_s
"""
BAD_ARGS, FS_UNREACHABLE, FS_AUTH, FS_ERR, DAEMON_DOWN, UNHEALTHY, NO_STREAM, FS_TIMEOUT = range(2, 10)
ESL_EXIT = {esl.Unreachable: FS_UNREACHABLE, esl.AuthFailed: FS_AUTH, esl.CommandFailed: FS_ERR,
            esl.TimedOut: FS_TIMEOUT, esl.BadLine: BAD_ARGS}
# FreeSWITCH's channel uuids: letters, digits and dashes, SWITCH_UUID_FORMATTED_LENGTH at most.
UUID = re.compile(r"[0-9A-Za-z-]{1,36}")
ADMIN_TIMEOUT_S = 5.0
COLUMNS = (("uuid", "uuid"), ("target", "target"), ("state", "state"),
           ("frames out", "frames_out"), ("frames in", "frames_in"), ("drops", "dropped"),
           ("reconnects", "reconnects"))


class Failure(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


# -- FreeSWITCH -------------------------------------------------------------------

def json_object(text: str, what: str) -> str:
    """Compact JSON text of an object, or Failure naming what was wrong. It goes on
    the api line as is: mod_ai_stream reads a JSON value to its matching brace."""
    try:
        value = json.loads(text, parse_constant=no_constant)
    except ValueError as e:
        raise Failure(BAD_ARGS, f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise Failure(BAD_ARGS, f"{what} must be a JSON object ({{...}}), got {type(value).__name__}")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def no_constant(name: str):
    """NaN and Infinity are not JSON: the AI server's parser may refuse them."""
    raise ValueError(f"{name} is not a JSON number")


def check_uuid(uuid: str) -> str:
    if not UUID.fullmatch(uuid):
        raise Failure(BAD_ARGS, f"uuid {uuid!r}: expected a channel uuid "
                                "(letters, digits and '-', at most 36)")
    return uuid


def api_args(args) -> list[str]:
    """`uuid_ai_stream` arguments for the command line, validated: nothing is sent otherwise."""
    uuid = check_uuid(args.uuid)
    if args.cmd == "stop":
        return [uuid, "stop"]
    if args.cmd == "send-payload":
        return [uuid, "send_payload", json_object(args.json, "the payload")]
    try:
        target = parse_target(args.target).authority
    except TargetError as e:
        raise Failure(BAD_ARGS, str(e)) from None
    out = [uuid, "start", target]
    if args.sample_rate:
        out.append(f"sample_rate={args.sample_rate}")
    if args.tracks:
        out.append(f"tracks={args.tracks}")
    if args.tls:
        out.append("tls=true")
    if args.metadata is not None:
        out.append("metadata=" + json_object(args.metadata, "--metadata"))
    return out


async def fs_api(cfg, command: str) -> str:
    try:
        conn = await esl.Connection.open(cfg.event_socket_host, cfg.event_socket_port,
                                         cfg.event_socket_password, cfg.event_socket_timeout_s)
        try:
            return await conn.api(command)
        finally:
            conn.close()
    except esl.EslError as e:
        prefix = "FreeSWITCH: " if isinstance(e, esl.CommandFailed) else ""
        raise Failure(ESL_EXIT[type(e)], f"{prefix}{e}") from None


# -- the daemon ---------------------------------------------------------------------

def admin_get(listen: str, path: str) -> tuple[int, dict]:
    addr = parse_target(listen)
    conn = http.client.HTTPConnection(addr.host, addr.port, timeout=ADMIN_TIMEOUT_S)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise Failure(DAEMON_DOWN, f"the gateway daemon is not running, or not at "
                                   f"http://{addr} (admin_listen): {e}") from None
    finally:
        conn.close()


def table(rows: list[dict], columns) -> str:
    cells = [[title for title, _ in columns]] + [[str(r[key]) for _, key in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def daemon_command(cfg, args) -> str:
    if args.cmd == "health":
        status, doc = admin_get(cfg.admin_listen, "/health")
        if status != 200:
            raise Failure(UNHEALTHY, f"gateway daemon unhealthy: its ticker stopped ({doc})")
        return f"ok: {doc['streams']} streams, {doc['ticks']} ticks"
    _, doc = admin_get(cfg.admin_listen, "/status")
    rows = doc["streams"]
    if args.cmd == "list":
        return table(rows, COLUMNS[:3])
    if args.uuid is not None:
        rows = [r for r in rows if r["uuid"] == args.uuid]
        if not rows:
            raise Failure(NO_STREAM, f"the gateway daemon has no stream for {args.uuid}")
    head = (f"pool {doc['pool']['path']}: {doc['pool']['slots']} slots, "
            f"{len(doc['streams'])} streams, daemon epoch {doc['daemon_epoch']}, "
            f"log level {doc['log_level']}")
    return head + "\n" + table(rows, COLUMNS)


def shown(text: str) -> str:
    """What a peer sent, safe for a terminal: control characters (escape sequences)
    are printed escaped, line breaks and tabs kept."""
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


# -- command line -------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="smartstreamctl", description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help=f"TOML settings file (default {settings.DEFAULT_PATH} "
                                     "if it exists)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="stream a call to an AI server")
    start.add_argument("uuid")
    start.add_argument("target", help="the AI server, host:port")
    start.add_argument("--sample-rate", type=int, choices=sorted(AI_RATES),
                       help="Hz the AI server gets (default: the channel's)")
    start.add_argument("--tracks", choices=["inbound", "outbound", "both"])
    start.add_argument("--tls", action="store_true", help="TLS to the AI server")
    start.add_argument("--metadata", metavar="JSON", help="object passed in StreamStart.metadata")
    sub.add_parser("stop", help="end a call's stream").add_argument("uuid")
    payload = sub.add_parser("send-payload", help="send JSON to the call's AI server")
    payload.add_argument("uuid")
    payload.add_argument("json", help="a JSON object")
    sub.add_parser("list", help="the daemon's streams: uuid, target, state")
    sub.add_parser("status", help="the daemon's streams with their counters").add_argument(
        "uuid", nargs="?")
    sub.add_parser("health", help="exit 0 if the daemon runs and ticks")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = settings.load(settings.config_path(args.config), os.environ)
        if args.cmd in ("start", "stop", "send-payload"):
            out = asyncio.run(fs_api(cfg, " ".join(["uuid_ai_stream", *api_args(args)])))
        else:
            out = daemon_command(cfg, args)
    except settings.SettingsError as e:
        print(f"smartstreamctl: {e}", file=sys.stderr)
        return BAD_ARGS
    except Failure as e:
        print(f"smartstreamctl: {shown(str(e))}", file=sys.stderr)
        return e.code
    print(shown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
