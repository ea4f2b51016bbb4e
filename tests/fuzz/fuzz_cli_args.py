#!/usr/bin/env python3
"""Command lines: `smartstream` (cli.py) and `smartstreamctl` (ctl.py),
parsing and validation only: no daemon starts, nothing is connected to, no
file is read or created.

- smartstreamctl: ctl.parser().parse_args, then for start/stop/send-payload
  ctl.api_args, which validates and builds the `uuid_ai_stream` command.
- smartstream: cli.parser().parse_args, then its flags (cli.flags) through
  settings.load with no file and no environment, as cli.main does.

Input: NUL-separated fields (argv cannot hold a NUL), decoded as sys.argv
is. The first field names the program; if it names neither, the input's
first byte picks one and every field is an argument.

Contract: bad arguments exit 2 (argparse's SystemExit; --help exits 0);
the flags and ctl's validation raise only SettingsError / ctl.Failure(2);
a command ctl would send to FreeSWITCH is one line whose uuid and target
hold no whitespace (esl.Connection.api raises esl.BadLine otherwise, and the
module splits its arguments on spaces).
"""
import contextlib
import io
import os

import atheris

from _common import check, main

with atheris.instrument_imports(include=["smartstream", "argparse"]):
    import argparse   # noqa: F401 (instrumented: its branches are the parser's)
    from smartstream import cli, ctl, settings
    from smartstream.config import Config


SINK = io.StringIO()
EXITED = object()
CLI_PARSER, CTL_PARSER = cli.parser(), ctl.parser()


def parse(fn, argv):
    """fn(argv) with argparse's output swallowed; EXITED when argparse exits."""
    SINK.seek(0)
    SINK.truncate()
    with contextlib.redirect_stdout(SINK), contextlib.redirect_stderr(SINK):
        try:
            return fn(argv)
        except SystemExit as e:
            help_ = any(a.startswith(("-h", "--h")) for a in argv)
            check(e.code == 2 or (e.code == 0 and help_),
                  lambda: f"argparse exited {e.code!r} for {argv!r}")
            check(e.code == 0 or "error:" in SINK.getvalue(), "exit 2 without an error message")
            return EXITED


def fuzz_smartstream(argv):
    args = parse(CLI_PARSER.parse_args, argv)
    if args is EXITED:
        return
    try:
        cfg = settings.load(None, {}, cli.flags(args))
        check(isinstance(cfg, Config), "load gave no Config")
    except settings.SettingsError as e:
        check(str(e), "SettingsError without a message")


def fuzz_smartstreamctl(argv):
    args = parse(CTL_PARSER.parse_args, argv)
    if args is EXITED or args.cmd not in ("start", "stop", "send-payload"):
        return
    try:
        api = ctl.api_args(args)
    except ctl.Failure as e:
        check(e.code == ctl.BAD_ARGS and str(e), lambda: f"Failure {e.code} {e}")
        return
    command = " ".join(["uuid_ai_stream", *api])
    check("\n" not in command and "\r" not in command,
          lambda: f"a multi-line FreeSWITCH command from {argv!r}: {command!r}")
    check(api[0] and not any(c.isspace() for c in api[0]), lambda: f"uuid {api[0]!r}")
    if args.cmd == "start":
        check(api[2] and not any(c.isspace() for c in api[2]), lambda: f"target {api[2]!r}")


def TestOneInput(data: bytes) -> None:
    fields = [os.fsdecode(f) for f in data.split(b"\0")]
    prog, argv = fields[0], fields[1:]
    if prog not in ("smartstream", "smartstreamctl"):
        prog = "smartstreamctl" if data[:1] and data[0] & 1 else "smartstream"
        argv = fields
    if prog == "smartstream":
        fuzz_smartstream(argv)
    else:
        fuzz_smartstreamctl(argv)


if __name__ == "__main__":
    main(TestOneInput)
