"""Parsers of `RAG_*` values, each naming the variable in its error (used by `settings.py`)."""

from __future__ import annotations

import json
import re

from search_service.errors import ConfigurationError

DISABLED = {"none", "off", "", "false", "0"}


def parse_int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value}")
    return value


def parse_size(name: str, raw: str) -> int:
    """Bytes, with an optional K/M/G suffix (binary multiples): '50M' -> 52428800."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[bB]?\s*", raw)
    if not match:
        raise ConfigurationError(f"{name} must be a size such as 52428800, 512K or 50M, got {raw!r}")
    number, unit = match.groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def parse_optional_model(raw: str) -> str | None:
    return None if raw.strip().lower() in DISABLED else raw.strip()


RERANKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


def parse_rerankers(name: str, raw: str) -> tuple[tuple[str, object], ...]:
    """`name=path_or_id,name2=path_or_id` -> ((name, path_or_id), ...), in order; a value that
    starts with `[` is a JSON list (`parse_reranker_list`)."""
    if raw.lstrip().startswith("["):
        return parse_reranker_list(name, raw)
    entries = []
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, source = item.partition("=")
        if not sep or not key.strip() or not source.strip():
            raise ConfigurationError(
                f"{name} must be name=path_or_id entries separated by commas, got {item.strip()!r}"
            )
        entries.append((key.strip(), source.strip()))
    return tuple(entries)


LOCAL_KEYS = {"name", "model", "family"}


def parse_reranker_list(name: str, raw: str) -> tuple[tuple[str, object], ...]:
    """The JSON form, so URLs need no escaping:
    `[{"name": "gpu", "remote": {"protocol": "tei", "url": "http://tei:8080", ...}},
      {"name": "local", "model": "BAAI/bge-reranker-base", "family": "encoder"}]`.
    A local entry becomes (name, path_or_id) as in the comma form (`family` as its
    `#family=<family>` suffix); a remote one (name, `RemoteConfig`)."""
    from search_service.remote.config import RERANK_PROTOCOLS, RemoteConfig

    try:
        items = json.loads(raw)
    except ValueError as error:
        raise ConfigurationError(f"{name}: a value starting with '[' must be a JSON list ({error})") from None
    if not isinstance(items, list):
        raise ConfigurationError(f"{name}: a value starting with '[' must be a JSON list")
    entries: list[tuple[str, object]] = []
    for position, item in enumerate(items):
        where = f"{name}[{position}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise ConfigurationError(f"{where}: each entry is an object with a \"name\" string")
        key = item["name"].strip()
        if "remote" in item:
            extra = sorted(set(item) - {"name", "remote"})
            if extra:
                raise ConfigurationError(f"{where} ({key}): a remote entry takes name and remote only, not {', '.join(extra)}")
            entries.append((key, RemoteConfig.from_dict(item["remote"], f"{name} ({key})", RERANK_PROTOCOLS)))
            continue
        unknown = sorted(set(item) - LOCAL_KEYS)
        if unknown:
            raise ConfigurationError(
                f"{where} ({key}): unknown field(s) {', '.join(unknown)}; a local entry has name, model "
                "and optionally family, a remote one name and remote"
            )
        model, family = item.get("model"), item.get("family")
        if not isinstance(model, str) or not model.strip():
            raise ConfigurationError(f"{where} ({key}): needs a \"model\" (hub id or local directory) or a \"remote\" object")
        if family is not None and (not isinstance(family, str) or not family.strip()):
            raise ConfigurationError(f"{where} ({key}): family must be a non-empty string")
        entries.append((key, model.strip() + (f"#family={family.strip()}" if family else "")))
    return tuple(entries)


def parse_model_aliases(name: str, raw: str) -> tuple[bool, tuple[tuple[str, str], ...]]:
    """`alias=model,alias2=model2` -> (built-ins kept, entries); an entry `none` drops the
    built-in aliases (`none` alone: no aliases at all; `none,a=b`: only `a`)."""
    builtins = True
    entries = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        if item.lower() in DISABLED:
            builtins = False
            continue
        alias, sep, target = item.partition("=")
        if not sep or not alias.strip() or not target.strip():
            raise ConfigurationError(
                f"{name} must be alias=model entries separated by commas (or none), got {item!r}"
            )
        entries.append((alias.strip(), target.strip()))
    return builtins, tuple(entries)


def text_value(_name: str, raw: str) -> str:
    return raw.strip()


def float_value(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None


def parse_list(raw: str) -> tuple[str, ...]:
    """Comma-separated values, stripped, empty ones dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_switch(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return "on"
    if value in ("off", "false", "0", "no"):
        return "off"
    raise ConfigurationError(f"{name} must be on or off, got {raw!r}")


def parse_auto_int(name: str, raw: str, minimum: int) -> int | None:
    """An integer, or `auto` (None: the code picks by device)."""
    return None if raw.strip().lower() in ("auto", "") else parse_int(name, raw, minimum)


RATE_UNITS = {"second": 1.0, "s": 1.0, "minute": 60.0, "min": 60.0, "m": 60.0, "hour": 3600.0, "h": 3600.0}


def parse_rate(name: str, raw: str) -> tuple[int, float] | None:
    """`120/minute`, `10/second`, `1000/hour` (or `/s`, `/m`, `/h`) -> (count, seconds); none: off."""
    if raw.strip().lower() in DISABLED:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*([a-z]+)\s*", raw.lower())
    if not match or match.group(2).rstrip("s") not in RATE_UNITS and match.group(2) not in RATE_UNITS or int(match.group(1)) < 1:
        raise ConfigurationError(f"{name} must look like 120/minute, 10/second or 1000/hour, got {raw!r}")
    unit = match.group(2)
    return int(match.group(1)), RATE_UNITS.get(unit, RATE_UNITS.get(unit.rstrip("s"), 1.0))
