"""Log lines: `ts level logger uuid=<uuid> message` (text) or one JSON object
per line (json). A record about a call carries its uuid: Call logs through a
LoggerAdapter with extra={"uuid": ...}."""
from __future__ import annotations

import json
import logging
import time


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        uuid = getattr(record, "uuid", None)
        line = (f"{_timestamp(record)} {record.levelname} {record.name} "
                f"{f'uuid={uuid} ' if uuid else ''}{record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        uuid = getattr(record, "uuid", None)
        if uuid:
            obj["uuid"] = uuid
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


FORMATTERS = {"text": TextFormatter, "json": JsonFormatter}


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(FORMATTERS[fmt]())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("grpc").setLevel(logging.WARNING)   # its DEBUG is per-call internals


def peer_text(text: str, limit: int = 200) -> str:
    """Text from the AI server made safe for one log line: control characters
    and newlines escaped (a %0A in grpc-message cannot forge a line), cut at limit."""
    cut = f"...({len(text) - limit} more)" if len(text) > limit else ""
    return repr(text[:limit])[1:-1] + cut


class Throttle:
    """At most one line per kind per interval_s, for lines a peer can cause at
    will; the next line that gets through says how many were suppressed."""

    def __init__(self, logger, interval_s: float = 10.0):
        self.logger, self.interval_s = logger, interval_s
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, kind: str, msg: str, *args, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now < self._next.get(kind, 0.0):
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._next[kind] = now + self.interval_s
        n = self._suppressed.pop(kind, 0)
        if n:
            msg += f" ({n} more like this in the last {self.interval_s:g} s not logged)"
        self.logger.log(level, msg, *args, exc_info=exc_info)
