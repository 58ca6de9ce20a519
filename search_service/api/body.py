"""Parse once, check at the edge: every request body is read here, once, and only here.

`read_body(kinds)` runs in the request gate (`auth.authorize`) before any collection is touched;
the gate, the limits and the views all use the value it leaves in `g.body` (`current_body()`).

- Content types: `kinds` are what the endpoint documents: `"json"` (`application/json` or
  `application/*+json`, any charset parameter) and `"multipart"` (`multipart/form-data`). Any
  other type, or none, is 415 `unsupported_media_type`.
- Size: above `MAX_CONTENT_LENGTH` (RAG_MAX_UPLOAD_BYTES) is 413, before anything is read.
- Values: nesting deeper than `MAX_DEPTH`, strings with NUL or lone surrogates, NaN, +-Infinity
  and numbers out of range (floats that overflow, integers beyond 64 bits) are 400s naming the
  field (`documents[0].metadata.a`). So are path and query parameters with NUL or lone surrogates.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from search_service.errors import InvalidRequestError, ServiceError

MAX_DEPTH = 32
MAX_INT = 2**63 - 1
BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
JSON_TYPES = ("application/json",)


class UnsupportedMediaTypeError(ServiceError):
    code = "unsupported_media_type"
    status = 415


@dataclass
class Body:
    """A parsed request body. `kind`: "json", "multipart" or "none" (an endpoint without one)."""

    kind: str
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    metadata: Any = None  # multipart's `metadata` field, parsed and checked like a JSON body


class _NonFinite:
    """What the parser leaves for NaN/Infinity, so the walk can name the field."""

    def __init__(self, text: str):
        self.text = text


def invalid(field_name: str, message: str) -> InvalidRequestError:
    error = InvalidRequestError(f"{field_name}: {message}")
    error.fields = [{"field": field_name, "message": message}]
    return error


def check_text(value: str | None, field_name: str) -> None:
    if not isinstance(value, str):
        return  # e.g. a multipart part without a name
    found = BAD_TEXT.search(value)
    if found is not None:
        what = "NUL characters" if found.group() == "\x00" else "lone surrogates"
        raise invalid(field_name, f"must not contain {what}")


def _child(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}" if path != "body" else key
    return f"{path}[{key!r}]"


def check_value(value: Any, path: str = "body") -> None:
    """Depth, strings and numbers of a parsed JSON value, without recursion."""
    stack = [(value, path, 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, _NonFinite):
            raise invalid(where, f"{item.text} is not a JSON number; send a finite number")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise invalid(where, "number out of range (it overflows a 64-bit float)")
        elif isinstance(item, int):
            if abs(item) > MAX_INT:
                raise invalid(where, "integer out of range (more than 64 bits)")
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise invalid(where, f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    check_text(key, f"{where} (a key)")
                    stack.append((child, _child(where, key), depth + 1))
            else:
                stack.extend((child, _child(where, i), depth + 1) for i, child in enumerate(item))


def parse_json(data: bytes | str, path: str = "body", charset: str | None = None) -> Any:
    """JSON text -> a checked Python value; every failure is a 400 naming `path`."""
    try:
        if isinstance(data, bytes) and charset and codecs.lookup(charset).name != "utf-8":
            data = data.decode(charset)
        value = json.loads(data, parse_constant=_NonFinite)
    except RecursionError:
        raise invalid(path, f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise invalid(path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (UnicodeDecodeError, LookupError):
        raise invalid(path, f"not valid {charset or 'UTF-8'} text") from None
    except ValueError:  # an integer literal beyond Python's digit limit
        raise invalid(path, "number out of range") from None
    check_value(value, path)
    return value


def check_params() -> None:
    """Path and query parameters: no NUL, no lone surrogates (a database cannot compare them)."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str):
            check_text(value, name)
    for name, value in request.args.items(multi=True):
        check_text(name, "query parameter name")
        check_text(value, name)


def _mimetype_kind() -> str | None:
    mimetype = request.mimetype
    if mimetype in JSON_TYPES or (mimetype.startswith("application/") and mimetype.endswith("+json")):
        return "json"
    if mimetype == "multipart/form-data":
        return "multipart"
    return None


def read_body(kinds: tuple[str, ...]) -> Body:
    """Check and parse the request body the way the endpoint takes it (413, 415, 400)."""
    if not kinds:
        g.body = Body("none")
        return g.body
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()
    kind = _mimetype_kind()
    if kind not in kinds:
        sent = request.mimetype or "no Content-Type"
        takes = " or ".join({"json": "application/json", "multipart": "multipart/form-data"}[k] for k in kinds)
        raise UnsupportedMediaTypeError(f"this endpoint takes {takes}, not {sent}")
    g.body = _read_json() if kind == "json" else _read_multipart()
    return g.body


def _read_json() -> Body:
    data = request.get_data(cache=True)
    if not data.strip():
        raise InvalidRequestError("the request body must be a JSON object", code="invalid_json")
    return Body("json", json=parse_json(data, charset=request.mimetype_params.get("charset")))


def _read_multipart() -> Body:
    form, files = request.form, request.files
    for name, value in form.items(multi=True):
        check_text(name, "form field name")
        check_text(value, name)
    for name, upload in files.items(multi=True):
        check_text(name, "form field name")
        check_text(upload.filename or "", f"{name}.filename")
    metadata = None
    if form.get("metadata"):
        metadata = parse_json(form["metadata"], path="metadata")
    return Body("multipart", form=form.to_dict(), files=files.to_dict(), metadata=metadata)


def current_body() -> Body:
    """The body the gate parsed (parsed now, as JSON, if no gate ran: a request outside the app's
    hooks, as in a unit test of a view)."""
    body = g.get("body")
    if body is None:
        body = read_body(("json",))
    return body
