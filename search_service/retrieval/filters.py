"""Search filters on document metadata, ids and sources, applied before the vector search.

Filtering first (then searching only the matching chunks) returns the true top results among
matching chunks; "top-50 then filter" could return nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from search_service.errors import InvalidRequestError

Matcher = Callable[[str, str | None, dict], bool]


def _value_matcher(key: str, condition: Any) -> Callable[[dict], bool]:
    if isinstance(condition, dict):
        if set(condition) != {"in"} or not isinstance(condition["in"], list):
            raise InvalidRequestError(
                f"filter.metadata.{key} must be a value or {{\"in\": [values]}}", code="invalid_filter"
            )
        allowed = condition["in"]
        return lambda meta: key in meta and meta[key] in allowed
    return lambda meta: key in meta and meta[key] == condition


def document_matcher(metadata: dict[str, Any] | None = None, document_ids: list[str] | None = None, sources: list[str] | None = None) -> Matcher:
    """A predicate over (external_id, source, metadata); every given condition must hold."""
    checks = [_value_matcher(key, condition) for key, condition in (metadata or {}).items()]
    ids = set(document_ids) if document_ids is not None else None
    allowed_sources = set(sources) if sources is not None else None

    def matches(external_id: str, source: str | None, meta: dict) -> bool:
        if ids is not None and external_id not in ids:
            return False
        if allowed_sources is not None and source not in allowed_sources:
            return False
        return all(check(meta) for check in checks)

    return matches
