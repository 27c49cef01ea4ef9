"""The service's logging: uvicorn's and the zoo's loggers as text lines or as one JSON object per line.

:func:`configure_logging` returns the ``logging.config.dictConfig`` mapping that ``uvicorn.run``
applies (in every worker process, which is why it is a mapping and not a call made here).
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, process, and the
    exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
            "process": record.process}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str, level: str) -> dict[str, Any]:
    """The dictConfig for ``uvicorn.run(log_config=...)``: ``log_format`` "text" or "json" on stderr for
    uvicorn's loggers and ``zoo``'s, at ``level``."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log_format must be 'text' or 'json', got {log_format!r}")
    formatter: dict[str, Any] = ({"()": f"{__name__}.JsonFormatter"} if log_format == "json"
                                 else {"format": TEXT_FORMAT})
    handler = {"class": "logging.StreamHandler", "formatter": "service", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
    return {"version": 1, "disable_existing_loggers": False, "formatters": {"service": formatter},
            "handlers": {"stderr": handler},
            "loggers": {"uvicorn": logger, "uvicorn.error": {"level": level.upper()},
                        "uvicorn.access": logger, "zoo": logger}}
