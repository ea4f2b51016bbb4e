"""`smartstream`: the gateway daemon (`run`) and a self-contained demo (`demo`).

Settings come from the built-in defaults, then the --config file (default
/etc/smartstream/smartstream.toml if it exists), then SMARTSTREAM_<KEY>
environment variables, then the flags below. SIGHUP re-reads the file and the
environment: their targets and log level replace the running ones, streams go on.
"""
from __future__ import annotations

import argparse
import asyncio
import grp
import logging
import os
import signal
import sys

from . import logs, sdnotify, settings
from .config import Config

log = logging.getLogger("smartstream")
FLAGS = ("pool_path", "pool_slots", "cadence_ms", "resume_bound_ms", "transport", "log_level")


def reload(gw, path: str | None) -> None:
    """SIGHUP: new target settings apply to the streams opened from now on."""
    try:
        new = settings.load(path)
        settings.check_host(new)
    except settings.SettingsError as e:
        log.error("reload failed, configuration unchanged: %s", e)
        return
    gw.config.targets = new.targets   # the transport reads them from this same Config
    gw.config.log_level = new.log_level
    logging.getLogger().setLevel(new.log_level)
    log.info("reloaded %s: %d targets, log level %s", path or "defaults", len(new.targets),
             new.log_level)


async def serve(cfg: Config, path: str | None) -> None:
    """Run the gateway until SIGTERM/SIGINT; then end every stream cleanly."""
    from .admin import AdminServer
    from .gateway import Gateway

    # Handlers first: the pool's heartbeat starts with Gateway(), and a SIGTERM
    # from then on must be a clean stop ("stopped"), never a death ("lost").
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gw = Gateway(cfg)
    loop.add_signal_handler(signal.SIGHUP, reload, gw, path)
    if cfg.pool_group:   # FreeSWITCH runs in this group: it must read and write the pool
        os.chown(cfg.pool_path, -1, grp.getgrnam(cfg.pool_group).gr_gid)
    admin = AdminServer(gw)
    await admin.start(cfg.admin_listen)
    gw.start()
    sdnotify.notify("READY=1")
    await stop.wait()
    sdnotify.notify("STOPPING=1")
    log.info("shutting down: ending %d streams", len(gw.calls))
    await admin.close()
    await gw.stop()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="smartstream", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the gateway daemon")
    demo = sub.add_parser("demo", help="daemon + example AI server + media simulator on loopback")
    for p in (run, demo):
        p.add_argument("--config", help=f"TOML settings file (default {settings.DEFAULT_PATH} "
                                        "if it exists); an error in it exits 2")
        p.add_argument("--pool-path", dest="pool_path")
        p.add_argument("--pool-slots", dest="pool_slots", type=int)
        p.add_argument("--cadence-ms", dest="cadence_ms", type=float)
        p.add_argument("--resume-bound-ms", dest="resume_bound_ms", type=int)
        p.add_argument("--transport", choices=["fast", "grpcio"])
        p.add_argument("--log-level", dest="log_level")
    demo.add_argument("--calls", type=int, default=3)
    demo.add_argument("--seconds", type=int, default=10)
    return ap


def flags(args: argparse.Namespace) -> dict:
    """The parsed flags as settings.load takes them (None: not given)."""
    return {"--" + name.replace("_", "-"): getattr(args, name) for name in FLAGS}


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    path = settings.config_path(args.config)
    try:
        cfg = settings.load(path, os.environ, flags(args))
        if args.cmd == "run":
            settings.check_host(cfg)
    except settings.SettingsError as e:
        print(f"smartstream: {e}", file=sys.stderr)
        return 2
    logs.setup(cfg.log_level, cfg.log_format)
    if args.cmd == "demo":
        from .demo import run_demo
        return run_demo(cfg, args.calls, args.seconds)
    import uvloop

    from ._ring import RingError
    try:
        uvloop.run(serve(cfg, path))
    except OSError as e:   # the admin address is taken, the pool cannot be shared, ...
        log.error("cannot run: %s", e)
        return 1
    except RingError as e:   # the pool file is not one we can use: one line, no traceback
        where = "" if cfg.pool_path in str(e) else f"pool {cfg.pool_path}: "
        log.error("cannot run: %s%s", where, e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
