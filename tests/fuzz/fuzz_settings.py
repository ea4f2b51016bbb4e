#!/usr/bin/env python3
"""The daemon's configuration: the TOML file and SMARTSTREAM_* environment
overrides (smartstream/settings.py load(), then check_host() as `smartstream
run` and SIGHUP's reload do).

Input: the file's bytes, then optionally a line "#--env--" followed by
NAME=value lines for the environment (names and values as a real
environment holds them: no NUL, no '=' in a name, decoded the way
os.environ decodes them).

Contract: a valid configuration gives a Config whose every value is in the
range or among the choices settings.py documents; anything else raises
SettingsError with a message. Nothing else escapes.
"""
import os

import atheris

from _common import check, main, shm_path

with atheris.instrument_imports(include=["smartstream", "tomllib"]):
    from smartstream import settings
    from smartstream.config import Config, TargetSettings
    from smartstream.target import parse_target

ENV_MARK = b"\n#--env--\n"
FILE = shm_path("settings") + ".toml"   # written and removed per input


def environment(text: bytes) -> dict:
    env = {}
    for line in text.split(b"\n"):
        name, sep, value = line.partition(b"=")
        if sep and name and b"\0" not in line:
            env[os.fsdecode(name)] = os.fsdecode(value)
    return env


def check_config(cfg) -> None:
    check(isinstance(cfg, Config), lambda: f"load gave {cfg!r}")
    for key, field in settings.KEYS.items():
        value = getattr(cfg, key)
        check(type(value) is settings._kind(field), lambda: f"{key} = {value!r}")
        if key in settings.RANGES:
            lo, hi = settings.RANGES[key]
            check(lo <= value <= hi, lambda: f"{key} = {value!r} outside {lo}..{hi}")
        if key in settings.CHOICES:
            check(value in settings.CHOICES[key], lambda: f"{key} = {value!r}")
    check(cfg.pool_path.startswith("/"), lambda: f"pool_path {cfg.pool_path!r}")
    check(cfg.retry_initial_ms <= cfg.retry_max_ms, "retry_initial_ms > retry_max_ms")
    parse_target(cfg.admin_listen)   # accepted, so it must parse
    for name, ts in cfg.targets.items():
        check(isinstance(ts, TargetSettings) and parse_target(name).authority == name,
              lambda: f"target {name!r}: {ts!r}")
        check(ts.tls or not any((ts.ca_file, ts.cert_file, ts.key_file, ts.server_name)),
              lambda: f"target {name!r}: TLS files without tls")
        check(bool(ts.cert_file) == bool(ts.key_file), lambda: f"target {name!r}: half mTLS")


def TestOneInput(data: bytes) -> None:
    text, _, env_text = data.partition(ENV_MARK)
    with open(FILE, "wb") as f:
        f.write(text)
    try:
        cfg = settings.load(FILE, environment(env_text))
    except settings.SettingsError as e:
        check(str(e), "SettingsError without a message")
        return
    finally:
        os.unlink(FILE)
    check_config(cfg)
    try:
        settings.check_host(cfg)
    except settings.SettingsError as e:
        check(str(e), "SettingsError without a message")


if __name__ == "__main__":
    main(TestOneInput)
