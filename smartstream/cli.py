"""`smartstream`: the gateway daemon (`run`) and a self-contained demo (`demo`)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .config import Config


class CallFormatter(logging.Formatter):
    """Every line about a call carries its uuid (Call logs with extra={"uuid": ...})."""

    def format(self, record):
        uuid = getattr(record, "uuid", None)
        record.call = f"uuid={uuid} " if uuid else ""
        return super().format(record)


def _config_from_args(args) -> Config:
    cfg = Config()
    for name in ("pool_path", "pool_slots", "cadence_ms", "resume_bound_ms", "transport", "log_level"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(cfg, name, value)
    return cfg


async def serve(cfg: Config, ready=None) -> None:
    """Run the gateway until SIGTERM/SIGINT; then end every stream cleanly."""
    from .gateway import Gateway

    gw = Gateway(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gw.start()
    if ready:
        ready(gw)
    await stop.wait()
    logging.getLogger("smartstream").info("shutting down: ending %d streams", len(gw.calls))
    await gw.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="smartstream", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the gateway daemon")
    demo = sub.add_parser("demo", help="daemon + example AI server + media simulator on loopback")
    for p in (run, demo):
        p.add_argument("--pool-path", dest="pool_path")
        p.add_argument("--pool-slots", dest="pool_slots", type=int)
        p.add_argument("--cadence-ms", dest="cadence_ms", type=float)
        p.add_argument("--resume-bound-ms", dest="resume_bound_ms", type=int)
        p.add_argument("--transport", choices=["grpcio"])
        p.add_argument("--log-level", dest="log_level", default="INFO")
    demo.add_argument("--calls", type=int, default=3)
    demo.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(CallFormatter("%(asctime)s %(levelname)s %(name)s %(call)s%(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    logging.getLogger("grpc").setLevel(logging.WARNING)   # its DEBUG is per-call internals
    cfg = _config_from_args(args)
    if args.cmd == "demo":
        from .demo import run_demo
        return run_demo(cfg, args.calls, args.seconds)
    import uvloop
    uvloop.run(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
