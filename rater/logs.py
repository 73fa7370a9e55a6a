"""Logging: plain or JSON lines, with the call uuid on every line logged while handling a call.

The uuid travels in a context variable that the per-call worker sets (gevent gives each
greenlet its own context), so no call site has to pass it along.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import TextIO

from rater.config import LogConfig

call_uuid: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_uuid", default=None)


class _CallContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_uuid = call_uuid.get()
        return True


# Control characters a value from the switch may carry (an account, a DID): written
# escaped, so that no value can forge a log line or drive the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}


class PlainFormatter(logging.Formatter):
    """One line per record (tracebacks aside): control characters in the message escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        uuid = getattr(record, "call_uuid", None)
        return f"{line} [call {uuid}]" if uuid and uuid not in line else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, call uuid, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        uuid = getattr(record, "call_uuid", None)
        if uuid:
            doc["call_uuid"] = uuid
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def setup_logging(cfg: LogConfig, stream: TextIO = sys.stderr) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_CallContext())
    if cfg.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(cfg.level)
