"""API keys: create, list, revoke, verify. Only a hash of each secret is stored.

A key reads `rag_<prefix>_<secret>`: the prefix (12 hex characters, unique) finds the row and is
safe to show in lists and logs; the secret is 256 random bits. The row keeps SHA-256 of the
secret. A slow password hash (scrypt, bcrypt) exists to make guessing low-entropy human passwords
expensive; a 256-bit random secret cannot be guessed whatever the hash costs, so a fast hash loses
nothing and keeps a per-request check in the microseconds instead of tens of milliseconds.
Hashes are compared with `hmac.compare_digest` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from search_service.errors import InvalidRequestError, NotFoundError
from search_service.identifiers import validate_key_name
from search_service.store.models import ApiKey

ROLES = ("read", "write", "admin")  # each role includes the ones before it
ALL_COLLECTIONS = "*"
KEY_PATTERN = re.compile(r"^rag_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
HASH_SCHEME = "sha256"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # at most one write per key per minute
# Hashed when the prefix is unknown, so a miss costs the same work as a wrong secret.
_DUMMY_HASH = f"{HASH_SCHEME}${hashlib.sha256(b'unused').hexdigest()}"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the key's prefix, name, role and collections (None = all)."""

    prefix: str
    name: str
    role: str
    collections: frozenset[str] | None

    def allows_role(self, needed: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(needed)

    def sees(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections


def hash_secret(secret: str) -> str:
    return f"{HASH_SCHEME}${hashlib.sha256(secret.encode()).hexdigest()}"


def parse_collections(raw: str | list[str] | tuple[str, ...]) -> list[str]:
    """`a,b` or `*` -> a sorted list of names (["*"] for every collection)."""
    from search_service.store.collections import validate_collection_name

    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = sorted({item.strip() for item in items if item.strip()})
    if not names:
        raise InvalidRequestError("a key needs at least one collection, or '*' for all of them")
    if ALL_COLLECTIONS in names:
        if len(names) > 1:
            raise InvalidRequestError("'*' already means every collection; give it alone")
        return [ALL_COLLECTIONS]
    for name in names:
        validate_collection_name(name)
    return names


def create_key(session: Session, *, name: str, role: str, collections) -> tuple[ApiKey, str]:
    """A new key; returns the row and the full key, which is never stored and never shown again."""
    if role not in ROLES:
        raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    validate_key_name(name.strip() if isinstance(name, str) else name)
    names = parse_collections(collections)
    for _ in range(5):  # a 48-bit prefix collision is unlikely; retry rather than fail
        prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = ApiKey(name=name.strip(), prefix=prefix, key_hash=hash_secret(secret), role=role, collections=names)
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            continue
        return row, f"rag_{prefix}_{secret}"
    raise RuntimeError("could not find an unused key prefix")


def list_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_key(session: Session, prefix: str) -> ApiKey:
    prefix = prefix.removeprefix("rag_").split("_", 1)[0]
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None:
        raise NotFoundError(f"no key with prefix {prefix!r}", code="key_not_found")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    session.flush()
    return row


def verify_key(session: Session, key: str) -> Principal | None:
    """The principal for a presented key, or None (malformed, unknown, wrong secret, revoked)."""
    match = KEY_PATTERN.match(key or "")
    if match is None:
        return None
    prefix, secret = match.groups()
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    presented = hash_secret(secret)
    stored = row.key_hash if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(presented.encode(), stored.encode()) or row is None or row.revoked_at is not None:
        return None
    now = datetime.now(UTC)
    last = row.last_used_at  # timezone-aware on every database (models.UTCDateTime)
    if last is None or now - last >= LAST_USED_RESOLUTION:
        row.last_used_at = now
    collections = None if ALL_COLLECTIONS in (row.collections or []) else frozenset(row.collections or [])
    return Principal(prefix=row.prefix, name=row.name, role=row.role, collections=collections)


def key_to_dict(row: ApiKey) -> dict:
    return {
        "prefix": row.prefix,
        "name": row.name,
        "role": row.role,
        "collections": list(row.collections or []),
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }
