"""Bytes to text: byte order marks, UTF-8, a declared charset, then charset-normalizer."""

from __future__ import annotations

import codecs

from ingestion.parsers.base import ParseError

BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes, *, charset: str | None = None) -> str:
    """Decode: a BOM wins, then valid UTF-8, then a declared charset, then charset-normalizer.

    UTF-8 goes before the declared charset because text with non-ASCII bytes that happens to be
    valid UTF-8 almost always is UTF-8, while declared charsets are often stale defaults.
    """
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise _undecodable(f"{encoding} (from its byte order mark)") from exc
    for encoding in ("utf-8", charset):
        if encoding:
            try:
                return data.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                pass
    return _detect_and_decode(data)


_CP1252_SLACK = 0.1  # chaos (charset-normalizer's mess ratio) cp1252 may exceed the best by


def _detect_and_decode(data: bytes) -> str:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise _undecodable("any known encoding")
    best = matches[0]
    # On short Western European text the guess wavers between cp1252, cp1250, cp1257...: take
    # cp1252, by far the most common legacy encoding, when it reads about as cleanly as the best.
    for match in matches:
        if "cp1252" in match.could_be_from_charset and match.chaos <= best.chaos + _CP1252_SLACK:
            return data.decode("cp1252")
    return str(best)


def _undecodable(what: str) -> ParseError:
    return ParseError(f"The document is not valid text in {what}.", code="undecodable_text")


def normalise_newlines(text: str) -> str:
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
