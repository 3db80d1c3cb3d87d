"""Logging for entry points: one JSON object per line, event name plus structured fields.

Libraries only get a logger (``logging.getLogger(__name__)``) and log an event name with
``extra=`` fields; never payloads or secrets.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr; and ``kill -USR1`` prints every thread's Python stack there,
    which is what a process that stopped making progress is waiting on."""
    # The process's own stderr (fd 2), not sys.stderr: that may be replaced by an object
    # without a file descriptor (click's CliRunner does), which faulthandler cannot write to.
    if sys.__stderr__ is not None:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
