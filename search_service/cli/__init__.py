"""`search-service`: migrate, keys, ingest, worker, reindex, serve, search, rerank, eval,
finetune-data, finetune.

One module per group of commands; importing them registers their commands on `main`.
"""

from search_service.cli import admin, evaluate, finetune, ingest, query, serve  # noqa: F401 (registers commands)
from search_service.cli.base import main

__all__ = ["main"]
