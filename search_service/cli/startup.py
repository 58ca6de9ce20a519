"""`serve`'s one start-up summary: what runs, where, and with which settings.

Written as one log record (the configured `RAG_LOG_FORMAT`, on stderr like every other line):
the message is for people, the same facts ride along as fields for JSON logs. It is a warning
when auth is off on an address other hosts can reach.
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import make_url

from search_service.auth import startup_warning
from search_service.settings import Settings

log = logging.getLogger("search_service.serve")


def _dtype(model) -> str | None:
    dtype = getattr(model, "dtype", None)
    inner = getattr(model, "model", None)
    if dtype is None and inner is not None:
        dtype = getattr(inner, "dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def _models(settings: Settings, services) -> tuple[dict, list[dict]]:
    """The embedder and rerankers as loaded (device, dtype, runtime), or as configured when this
    process loads none (gunicorn: each worker loads its own)."""
    if services is None:
        embedder = {"model": settings.embedder_model, "device": f"{settings.device} (per worker)"}
        names = [name for name, _ in settings.rerankers] or ([settings.reranker_model] if settings.reranker_model else [])
        rerankers = [{"name": name, "dtype": settings.reranker_dtype, "runtime": settings.reranker_runtime}
                     for name in names]
        return embedder, rerankers
    loaded = services.embedder
    embedder = {"model": loaded.model_id, "device": str(getattr(loaded, "device", "cpu")), "dtype": _dtype(loaded)}
    if getattr(loaded, "device", None) == "remote":
        embedder["engine"] = loaded.config.where
    rerankers = [
        {
            "name": name,
            "family": getattr(reranker, "family", None),
            "device": str(getattr(reranker, "device", "cpu")),
            "dtype": _dtype(reranker),
            "runtime": getattr(reranker, "runtime", "torch"),
            "engine": reranker.config.where if getattr(reranker, "runtime", None) == "remote" else None,
            "default": name == services.rerankers.default,
        }
        for name, reranker in services.rerankers.rerankers.items()
    ]
    return embedder, rerankers


def _describe(entry: dict, skip: tuple[str, ...]) -> str:
    return ", ".join(f"{key} {value}" for key, value in entry.items() if key not in skip and value not in (None, False))


def startup_summary(settings: Settings, services=None, *, server: str, ingest_workers: int = 0) -> tuple[str, dict, bool]:
    """(message, fields, is_warning) of the summary `serve` logs once before it listens."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}/"
    warning = startup_warning(settings)
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    embedder, rerankers = _models(settings, services)
    if settings.auth_enabled:
        auth = "on (API keys required; make one with `search-service keys create`)"
    else:
        auth = f"OFF: {warning}" if warning else "off (no keys needed; loopback only)"
    lines = [
        f"search-service serving on {url} ({server})",
        f"  auth: {auth}",
        f"  database: {database}",
        f"  embedder: {embedder['model']} ({_describe(embedder, ('model',))})",
    ]
    for entry in rerankers:
        default = " (default)" if entry.get("default") and len(rerankers) > 1 else ""
        lines.append(f"  reranker {entry['name']}{default}: {_describe(entry, ('name', 'default'))}")
    if not rerankers:
        lines.append("  reranker: none (RAG_RERANKER_MODEL=none; searches return the dense order)")
    lines += [
        f"  ingestion workers: {ingest_workers}" + ("" if ingest_workers else " (run `search-service worker` for uploads)"),
        f"  playground: {url}  (API docs: {url}docs)",
    ]
    if settings.settings_file is not None:
        lines.append(f"  settings file: {settings.settings_file} (the environment overrides it)")
    fields = {
        "url": url, "server": server, "auth": settings.auth, "database": database, "embedder": embedder,
        "rerankers": rerankers, "ingest_workers": ingest_workers, "playground": url,
        "settings_file": str(settings.settings_file) if settings.settings_file else None,
    }
    return "\n".join(lines), fields, warning is not None


def log_startup(settings: Settings, services=None, *, server: str, ingest_workers: int = 0) -> None:
    message, fields, is_warning = startup_summary(settings, services, server=server, ingest_workers=ingest_workers)
    log.log(logging.WARNING if is_warning else logging.INFO, message, extra={"startup": fields})
