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
