"""JSON logs with the request id of the request being served."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None):
    return _request_id.set(value)


def reset_request_id(token) -> None:
    _request_id.reset(token)


def _install_record_factory() -> None:
    """Every log record carries the request id, whichever handler formats it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_adiuva", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = _request_id.get()
        return record

    factory._adiuva = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def configure_logging(level: str = "INFO") -> None:
    """Route the root logger (and uvicorn's) through one JSON handler on stdout."""
    _install_record_factory()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler._adiuva = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # Replace only our own handler, so calling this twice (or under pytest) adds no duplicates.
    root.handlers = [h for h in root.handlers if not getattr(h, "_adiuva", False)]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # Our request middleware writes the access log with the request id.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("LiteLLM", "litellm", "httpx", "botocore", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
