"""Settings: the TOML file, SMARTSTREAM_* overrides, flags, and errors that name the key."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from smartstream import settings
from smartstream.config import Config, TargetSettings
from smartstream.settings import SettingsError

from .harness import REPO

EXAMPLE = REPO / "packaging" / "smartstream.toml"


def load_text(tmp_path, text: str, env=None, flags=None) -> Config:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return settings.load(str(path), env or {}, flags)


def test_no_file_no_env_gives_the_defaults():
    assert settings.load(None, {}) == Config()


def test_the_shipped_example_documents_every_key_with_its_default():
    text = EXAMPLE.read_text()
    for key in settings.KEYS:
        assert f"\n{key} = " in text, f"{key} is not in packaging/smartstream.toml"
    for key in settings.TARGET_KEYS:
        assert f"# {key} = " in text
    cfg = settings.load(str(EXAMPLE), {})
    assert cfg.pool_group == "freeswitch"
    assert dataclasses.replace(cfg, pool_group="") == Config()


def test_file_then_environment_then_flags(tmp_path):
    cfg = load_text(tmp_path, 'pool_slots = 64\ncadence_ms = 10\nlog_level = "debug"\n'
                              'pool_path = "/dev/shm/from-file.pool"\n',
                    env={"SMARTSTREAM_POOL_SLOTS": "128", "SMARTSTREAM_POOL_MODE": "0o600",
                         "SMARTSTREAM_LOG_LEVEL": "warning", "OTHER_VAR": "ignored"},
                    flags={"--log-level": "ERROR", "--cadence-ms": None})
    assert cfg.pool_slots == 128              # the environment wins over the file
    assert cfg.pool_mode == 0o600
    assert cfg.cadence_ms == 10.0 and isinstance(cfg.cadence_ms, float)
    assert cfg.log_level == "ERROR"           # a flag wins over both; None is "not given"
    assert cfg.pool_path == "/dev/shm/from-file.pool"


def test_targets_are_keyed_by_their_normalised_address(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = load_text(tmp_path, f'[targets."[::1]:443"]\ntls = true\nca_file = "{ca}"\n'
                              'token = "s3cret"\n[targets."asr.local:50051"]\n')
    assert cfg.targets == {"[::1]:443": TargetSettings(tls=True, ca_file=str(ca), token="s3cret"),
                           "asr.local:50051": TargetSettings()}
    settings.check_host(cfg)
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize("text, env, message", [
    ("pool_slot = 3\n", {}, "s.toml: pool_slot: unknown key (did you mean pool_slots?)"),
    ("[pool]\npath = '/x'\n", {}, "s.toml: pool: unknown key"),
    ('pool_slots = "many"\n', {}, "s.toml: pool_slots: expected an integer, got a string"),
    ("pool_slots = true\n", {}, "s.toml: pool_slots: expected an integer, got a boolean"),
    ("pool_slots = 0\n", {}, "s.toml: pool_slots: expected 1..65536, got 0"),
    ("cadence_ms = 5000\n", {}, "s.toml: cadence_ms: expected 1..1000, got 5000.0"),
    ("drain_period_ms = 0\n", {}, "s.toml: drain_period_ms: expected 1..1000, got 0.0"),
    ('drain_period_ms = "fast"\n', {}, "s.toml: drain_period_ms: expected a number, got a string"),
    ('log_level = "LOUD"\n', {}, "s.toml: log_level: expected one of DEBUG, INFO, WARNING, "
                                 "ERROR, CRITICAL, got 'LOUD'"),
    ('log_format = "xml"\n', {}, "s.toml: log_format: expected one of text, json, got 'xml'"),
    ('pool_path = "smartstream.pool"\n', {}, "s.toml: pool_path: expected an absolute path"),
    ('admin_listen = "9464"\n', {}, "s.toml: admin_listen: expected host:port, got '9464'"),
    ("event_socket_port = 70000\n", {}, "s.toml: event_socket_port: expected 1..65535"),
    ("retry_initial_ms = 9000\n", {}, "retry_initial_ms (9000) must not exceed retry_max_ms"),
    ("pool_mode = 0o664\n", {}, "s.toml: pool_mode: 0o664 gives other users access to the calls"),
    ("", {"SMARTSTREAM_POOL_MODE": "0o601"}, "SMARTSTREAM_POOL_MODE: 0o601 gives other users access"),
    ("heartbeat_timeout_ms = 5\n", {}, "s.toml: heartbeat_timeout_ms: expected 20..10000, got 5"),
    ("heartbeat_timeout_ms = 30\n", {},
     "heartbeat_timeout_ms (30) must be at least two ticks (cadence_ms 20)"),
    ("pool_slots = \n", {}, "s.toml: not valid TOML"),
    ("targets = 3\n", {}, 's.toml: targets: expected tables [targets."host:port"]'),
    ('[targets."no port"]\n', {}, 's.toml: targets."no port": target \'no port\': expected host:port'),
    ('[targets."a:1"]\ntoken = 5\n', {}, 's.toml: targets."a:1".token: expected a string, got an integer'),
    ('[targets."a:1"]\ntls = "yes"\n', {}, 's.toml: targets."a:1".tls: expected true or false, got a string'),
    ('[targets."a:1"]\ntsl = true\n', {}, 's.toml: targets."a:1".tsl: unknown key (did you mean tls?)'),
    ('[targets."a:1"]\nca_file = "/ca"\n', {}, 's.toml: targets."a:1".ca_file: only used with tls = true'),
    ('[targets."a:1"]\ntls = true\ncert_file = "/c"\n', {},
     's.toml: targets."a:1": cert_file and key_file go together'),
    ("", {"SMARTSTREAM_POOL_SLOTS": "lots"}, "SMARTSTREAM_POOL_SLOTS: expected an integer, got 'lots'"),
    ("", {"SMARTSTREAM_CADENCE_MS": "0"}, "SMARTSTREAM_CADENCE_MS: expected 1..1000, got 0.0"),
    ("", {"SMARTSTREAM_POOLSLOTS": "8"},
     "SMARTSTREAM_POOLSLOTS: unknown setting (did you mean SMARTSTREAM_POOL_SLOTS?)"),
])
def test_every_error_names_the_key_and_what_is_expected(tmp_path, text, env, message):
    with pytest.raises(SettingsError) as e:
        load_text(tmp_path, text, env=env)
    assert message in str(e.value)


def test_flags_are_checked_like_the_file(tmp_path):
    with pytest.raises(SettingsError, match=r"--pool-slots: expected 1\.\.65536, got 0"):
        settings.load(None, {}, {"--pool-slots": 0})


def test_unreadable_file_and_missing_host_resources_are_named(tmp_path):
    with pytest.raises(SettingsError, match=r"nope\.toml: cannot read: No such file"):
        settings.load(str(tmp_path / "nope.toml"), {})
    cfg = load_text(tmp_path, f'[targets."a:1"]\ntls = true\nca_file = "{tmp_path}/none.pem"\n')
    with pytest.raises(SettingsError, match=r'targets\."a:1"\.ca_file: cannot read .*none\.pem'):
        settings.check_host(cfg)
    with pytest.raises(SettingsError, match="pool_group: no group 'no-such-group-here'"):
        settings.check_host(Config(pool_group="no-such-group-here"))
    with pytest.raises(SettingsError, match=re.escape("pool_group: no group 'a\\x00b'")):
        settings.check_host(Config(pool_group="a\0b"))
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('log_level = "INFO" # caf\xe9\n'.encode("latin-1"))
    with pytest.raises(SettingsError, match=r"latin1\.toml: not valid TOML"):
        settings.load(str(latin1), {})


def test_a_wrong_token_type_does_not_echo_secrets(tmp_path):
    with pytest.raises(SettingsError) as e:
        load_text(tmp_path, '[targets."a:1"]\ntoken = ["s3cret"]\n')
    assert "s3cret" not in str(e.value)


def test_smartstream_run_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("pool_slots = -1\n")
    r = subprocess.run([sys.executable, "-m", "smartstream.cli", "run", "--config", str(bad)],
                       capture_output=True, text=True, cwd=REPO, timeout=30)
    assert r.returncode == 2
    assert f"{bad}: pool_slots: expected 1..65536, got -1" in r.stderr
