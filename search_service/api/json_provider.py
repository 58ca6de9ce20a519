"""Strict JSON responses for the whole app: `NaN` and `Infinity` are not JSON, so none goes out.

Flask's default provider writes Python's `json.dumps(..., allow_nan=True)`, which emits the bare
tokens `NaN`/`Infinity` that strict parsers (browsers' `JSON.parse`, Go, Rust) reject. This provider
serializes with `allow_nan=False`; a value that still holds a non-finite float (a row stored before
the edge checks, a score that overflowed) has it written as `null`, and the event is logged.
Non-ASCII is escaped (Flask's default), so a lone surrogate in an old row stays valid JSON text.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from flask.json.provider import DefaultJSONProvider

log = logging.getLogger(__name__)


def finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (iterative: no recursion limit)."""
    root = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, float) and not math.isfinite(item):
            container[key] = None
        elif isinstance(item, dict):
            copy = dict(item)
            container[key] = copy
            stack.extend((copy, k) for k in copy)
        elif isinstance(item, (list, tuple)):
            copy = list(item)
            container[key] = copy
            stack.extend((copy, i) for i in range(len(copy)))
    return root[0]


class StrictJSONProvider(DefaultJSONProvider):
    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("default", self.default)
        kwargs.setdefault("ensure_ascii", self.ensure_ascii)
        kwargs.setdefault("sort_keys", self.sort_keys)
        kwargs["allow_nan"] = False
        try:
            return json.dumps(obj, **kwargs)
        except ValueError:
            log.warning("a response held NaN or Infinity; written as null")
            return json.dumps(finite(obj), **kwargs)
