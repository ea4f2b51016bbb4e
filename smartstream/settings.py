"""Configuration: built-in defaults, then ONE TOML file, then SMARTSTREAM_<KEY>
environment variables, then command-line flags, into a Config.

A key in the file is a Config field name (pool_slots, cadence_ms, ...) and its
variable is SMARTSTREAM_ plus the name in capitals. AI servers are tables
[targets."host:port"] with TargetSettings' fields; they come from the file only.
Every error names the key and says what is expected.
"""
from __future__ import annotations

import dataclasses
import difflib
import grp
import os
import sys
from collections.abc import Mapping

from . import actions
from .config import Config, TargetSettings
from .target import TargetError, parse_target

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DEFAULT_PATH = "/etc/smartstream/smartstream.toml"
ENV_PREFIX = "SMARTSTREAM_"

RANGES = {
    "pool_slots": (1, 65536), "pool_mode": (0, 0o777), "cadence_ms": (1, 1000),
    "drain_period_ms": (1, 1000),
    "heartbeat_timeout_ms": (20, 10_000),
    "resume_bound_ms": (0, 600_000), "prebuffer_ms": (0, 10_000),
    "max_tts_queue_ms": (0, 3_600_000), "retry_initial_ms": (1, 600_000),
    "retry_max_ms": (1, 600_000), "retry_give_up_s": (0, 86_400),
    "streams_per_channel": (1, 100_000), "keepalive_ms": (1000, 3_600_000),
    "keepalive_timeout_ms": (1000, 3_600_000), "event_socket_port": (1, 65535),
    "event_socket_timeout_s": (0.1, 600), "admin_max_connections": (1, 10_000),
    "admin_timeout_s": (0.1, 600),
    "stream_max_messages_per_s": (1, 1_000_000), "stream_max_bytes_per_s": (1024, 1 << 30),
    "stream_burst_s": (0.1, 60),
}
CHOICES = {
    "transport": ("fast", "grpcio"), "log_format": ("text", "json"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
}
KEYS = {f.name: f for f in dataclasses.fields(Config) if f.name != "targets"}
TARGET_KEYS = {f.name: f for f in dataclasses.fields(TargetSettings)}
TLS_ONLY = ("ca_file", "cert_file", "key_file", "server_name")
KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
VALUE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "an array", dict: "a table"}


class SettingsError(ValueError):
    """A wrong setting; the message names it."""


def config_path(path: str | None) -> str | None:
    """--config, else the system file if there is one, else None (built-in defaults)."""
    if path is not None:
        return path
    return DEFAULT_PATH if os.path.exists(DEFAULT_PATH) else None


def load(path: str | None, env: Mapping[str, str] = os.environ,
         flags: Mapping[str, object] | None = None) -> Config:
    cfg = Config()
    if path is not None:
        _apply_file(cfg, path)
    for var, text in env.items():
        if var.startswith(ENV_PREFIX):
            key = var[len(ENV_PREFIX):].lower()
            _set(cfg, key, _from_text(key, text, var), var)
    for flag, value in (flags or {}).items():
        if value is not None:
            _set(cfg, flag.lstrip("-").replace("-", "_"), value, flag)
    if cfg.heartbeat_timeout_ms < 2 * cfg.cadence_ms:
        raise SettingsError(f"heartbeat_timeout_ms ({cfg.heartbeat_timeout_ms}) must be at least "
                            f"two ticks (cadence_ms {cfg.cadence_ms:g})")
    if cfg.retry_initial_ms > cfg.retry_max_ms:
        raise SettingsError(f"retry_initial_ms ({cfg.retry_initial_ms}) must not exceed "
                            f"retry_max_ms ({cfg.retry_max_ms})")
    return cfg


def check_host(cfg: Config) -> None:
    """What only the daemon's host can tell: the files and the group exist."""
    if cfg.pool_group:
        try:
            grp.getgrnam(cfg.pool_group)
        except (KeyError, ValueError):   # ValueError: a NUL in the name
            raise SettingsError(f"pool_group: no group {cfg.pool_group!r} on this host") from None
    for name, ts in cfg.targets.items():
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(ts, key)
            if path and ("\0" in path or not os.access(path, os.R_OK)):
                raise SettingsError(f'targets."{name}".{key}: cannot read {path!r}')


def _apply_file(cfg: Config, path: str) -> None:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise SettingsError(f"{path}: cannot read: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:   # TOML is UTF-8
        raise SettingsError(f"{path}: not valid TOML: {e}") from None
    for key, value in doc.items():
        if key == "targets":
            cfg.targets = _targets(path, value)
        else:
            _set(cfg, key, value, f"{path}: {key}")


def _targets(path: str, table) -> dict[str, TargetSettings]:
    if not isinstance(table, dict):
        raise SettingsError(f'{path}: targets: expected tables [targets."host:port"]')
    out = {}
    for name, keys in table.items():
        where = f'{path}: targets."{name}"'
        try:
            target = parse_target(name)
        except TargetError as e:
            raise SettingsError(f"{where}: {e}") from None
        authority = target.authority
        if not isinstance(keys, dict):
            raise SettingsError(f"{where}: expected a table of {', '.join(TARGET_KEYS)}")
        ts = TargetSettings()
        for key, value in keys.items():
            field = TARGET_KEYS.get(key)
            if field is None:
                raise SettingsError(f"{where}.{key}: unknown key{_did_you_mean(key, TARGET_KEYS)}")
            kind, name = _kind(field), f"{where}.{key}"
            setattr(ts, key, _strings(value, name) if kind is tuple else _typed(kind, value, name))
        _check_grant(ts, where)
        # Loopback traffic never leaves the host; anywhere else anyone on the path reads it.
        if ts.token and not ts.tls and not _loopback(target):
            raise SettingsError(f"{where}.token: needs tls = true: a bearer token over plain TCP "
                                "is readable by anyone on the path")
        for key in TLS_ONLY:
            if getattr(ts, key) and not ts.tls:
                raise SettingsError(f"{where}.{key}: only used with tls = true")
        if bool(ts.cert_file) != bool(ts.key_file):
            raise SettingsError(f"{where}: cert_file and key_file go together (mutual TLS)")
        out[authority] = ts
    return out


def _loopback(target) -> bool:
    return all(h == "localhost" or h == "::1" or h.startswith("127.")
               for h in [a.host for a in target.addresses] or [target.host])


def _strings(value, name: str) -> tuple:
    if type(value) is not list or any(type(v) is not str for v in value):
        raise SettingsError(f"{name}: expected an array of strings")
    return tuple(value)


def _check_grant(ts: TargetSettings, where: str) -> None:
    unknown = [a for a in ts.allow_actions if a not in actions.ACTIONS]
    if unknown:
        raise SettingsError(f"{where}.allow_actions: unknown action {unknown[0]!r}; expected "
                            f"any of {', '.join(actions.ACTIONS)}")
    try:
        actions.parse_transfer_allow(ts.transfer_allow)
    except ValueError as e:
        raise SettingsError(f"{where}.transfer_allow: {e}") from None
    if ts.transfer_allow and "transfer" not in ts.allow_actions:
        raise SettingsError(f'{where}.transfer_allow: needs "transfer" in allow_actions')


def _set(cfg: Config, key: str, value, name: str) -> None:
    field = KEYS.get(key)
    if field is None:
        raise SettingsError(f"{name}: unknown key{_did_you_mean(key, KEYS)}")
    value = _typed(_kind(field), value, name)
    if key == "log_level":
        value = value.upper()
    if key in RANGES:
        lo, hi = RANGES[key]
        if not lo <= value <= hi:
            raise SettingsError(f"{name}: expected {lo}..{hi}, got {value}")
    if key in CHOICES and value not in CHOICES[key]:
        raise SettingsError(f"{name}: expected one of {', '.join(CHOICES[key])}, got {value!r}")
    if key == "pool_mode" and value & 0o007:   # the pool carries every call's audio
        raise SettingsError(f"{name}: {value:#o} gives other users access to the calls; "
                            "expected owner and group bits only (e.g. 0o660)")
    if key == "pool_path" and not value.startswith("/"):
        raise SettingsError(f"{name}: expected an absolute path, got {value!r}")
    if key == "admin_listen":
        try:
            parse_target(value)
        except TargetError:
            raise SettingsError(f"{name}: expected host:port, got {value!r}") from None
    setattr(cfg, key, value)


def _kind(field: dataclasses.Field) -> type:
    return str if field.default is None else type(field.default)


def _typed(kind: type, value, name: str):
    if kind is float and type(value) is int:
        return float(value)
    if type(value) is not kind:   # type(), not isinstance: true is not an integer here
        got = VALUE_NAMES.get(type(value), type(value).__name__)
        raise SettingsError(f"{name}: expected {KIND_NAMES[kind]}, got {got}")
    return value


def _from_text(key: str, text: str, var: str):
    """An environment variable's text as the key's type (ints: 0o660 and 0x1f work)."""
    field = KEYS.get(key)
    if field is None:
        raise SettingsError(f"{var}: unknown setting{_did_you_mean(key, KEYS, ENV_PREFIX)}")
    kind = _kind(field)
    try:
        if kind is int:
            return int(text, 0)
        return float(text) if kind is float else text
    except ValueError:
        raise SettingsError(f"{var}: expected {KIND_NAMES[kind]}, got {text!r}") from None


def _did_you_mean(key: str, known, prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {prefix}{close[0].upper() if prefix else close[0]}?)" if close else ""
