"""The one rule for names a client chooses: collection names, document ids and key names.

Checked where they are created (collection create, upload, `keys create`), so every stored name
can be put in a URL, fetched and deleted:

- collection names: 1-64 characters of letters, digits, `_`, `-` and `.`, starting with a letter
  or digit (`store.collections.NAME_PATTERN`; they appear in URL paths and metric labels);
- document ids: 1-1024 characters; key names: 1-128 characters; neither may contain control
  characters (U+0000-U+001F, U+007F-U+009F) or lone surrogates, nor start with `/`.

A name that breaks the rule is a 400 (`invalid_collection_name`, `invalid_document_id`,
`invalid_key_name`) naming the field. Ids stored before the rule stay reachable through
`?id=` on `GET`/`DELETE /v1/collections/{name}/documents`.
"""

from __future__ import annotations

import re

from search_service.errors import InvalidRequestError

MAX_DOCUMENT_ID = 1024
MAX_KEY_NAME = 128
FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def problem(value, max_length: int) -> str | None:
    """Why `value` breaks the rule, or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > max_length:
        return f"must be at most {max_length} characters (got {len(value)})"
    if FORBIDDEN.search(value):
        return "must not contain control characters or lone surrogates"
    if value.startswith("/"):
        return "must not start with '/'"
    return None


def check(value, *, field: str, max_length: int, code: str) -> str:
    reason = problem(value, max_length)
    if reason is not None:
        raise InvalidRequestError(f"{field}: {reason}", code=code)
    return value


def validate_document_id(value, field: str = "id") -> str:
    return check(value, field=field, max_length=MAX_DOCUMENT_ID, code="invalid_document_id")


def validate_key_name(value, field: str = "name") -> str:
    return check(value, field=field, max_length=MAX_KEY_NAME, code="invalid_key_name")


def validate_collection_name(value) -> str:
    from search_service.store.collections import validate_collection_name as validate

    return validate(value)
