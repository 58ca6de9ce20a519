"""Log formats: the CLI's text lines, serve's and worker's JSON lines (with the request id), and
which loggers speak at which level."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from flask import g, has_request_context


def request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def iso_time(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with its offset, as every timestamp the service shows."""
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    """`RAG_LOG_FORMAT=text` and the CLI: one line per record, its time in ISO 8601 with the offset."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record, datefmt=None):
        return iso_time(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any `extra` fields."""

    RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": iso_time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id()
        if rid:
            body["request_id"] = rid
        body.update({k: v for k, v in vars(record).items() if k not in self.RESERVED and k != "request_id"})
        if record.exc_info:
            body["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, ensure_ascii=False)


OWN_LOGGERS = ("search_service", "ingestion", "waitress")


class DebugNeedsVerbose(logging.Filter):
    """Drops records below INFO: some libraries (bm25s) set their own loggers to DEBUG, and their
    lines should reach the log only with `-v`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


def setup_logging(verbose: bool) -> None:
    """The CLI's logging: our packages at INFO (DEBUG with -v), everyone else at WARNING, and no
    library's DEBUG lines without -v whatever level it set for itself."""
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a host that configured logging keeps its own
        handler = logging.StreamHandler()
        handler.setFormatter(TextFormatter())
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for package in OWN_LOGGERS:
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, DebugNeedsVerbose)]:
            handler.removeFilter(old)
        if not verbose:
            handler.addFilter(DebugNeedsVerbose())


def configure_logging(log_format: str) -> None:
    """One format on one stream for serve and worker: JSON lines (`RAG_LOG_FORMAT=json`) or the
    CLI's text lines, and no progress bars (model loading's would break the lines)."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as transformers_logging

    disable_progress_bars()
    transformers_logging.disable_progress_bar()
    if log_format != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
