"""LLM-ready context: the best passages packed into a token budget, with numbered citations.

Passages are taken best first. A passage of the same document as an earlier one whose character
range overlaps or touches it, or that is the next or previous chunk, is merged into that block
(chunk texts are exact slices of the extracted text, so an overlap is cut at the right
character; between neighbouring chunks only whitespace was left out, which is rendered as one
space, or as a blank line when it was longer than one character). Each block is one citation:

    [1] first block's text

    [2] second block's text

A passage whose addition would make the rendered context exceed `budget` tokens is skipped (a
later, shorter one may still fit); if not even the best passage fits, its beginning is kept up to
the budget (cut at a token boundary) and the citation is marked `truncated`. Tokens are counted
on the whole rendered text, without special tokens, with a Hugging Face tokenizer.

Only tokenizers the operator configured count: the embedder's (the default), each loaded
reranker's (by its request name or its id/path) and those listed in `RAG_CONTEXT_TOKENIZERS`;
responses name them by display name (`model_names.py`), never by a filesystem path.
Any other name is refused (`context_tokenizer_not_allowed`), so a client can make the server
neither download from the hub nor read a local directory.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ingestion.tokens import private_backend
from search_service.errors import InvalidRequestError
from search_service.model_names import display_name

log = logging.getLogger(__name__)

MAX_LOADED_TOKENIZERS = 8


class ContextTokenizers:
    """Token counters by name, for the allowed tokenizers only, each loaded on first use.

    `known`: name -> (tokenizer object or None, source to load when None), for the configured
    models (the default, `default_name`, is the embedder's tokenizer); `allowed`: more hub ids or
    local directories that may be loaded by name (`RAG_CONTEXT_TOKENIZERS`).
    """

    def __init__(
        self,
        default_name: str,
        default_tokenizer,
        *,
        known: Mapping[str, tuple[object | None, str]] | None = None,
        allowed: Iterable[str] = (),
    ):
        self.default_name = default_name
        self._known: dict[str, tuple[object | None, str]] = {
            default_name: (default_tokenizer, default_name),
            **{name: entry for name, entry in (known or {}).items() if name != default_name},
        }
        self._allowed: set[str] = set()
        self._loaded: OrderedDict[str, tuple[object, threading.Lock]] = OrderedDict()
        if default_tokenizer is not None:
            self._loaded[default_name] = (copy.deepcopy(default_tokenizer), threading.Lock())
        self._lock = threading.Lock()
        self.allow(allowed)
        # accepted name -> the name responses show (a loaded reranker's request name; any other
        # by its display name, never a filesystem path)
        self.shown: dict[str, str] = {}

    @classmethod
    def for_models(cls, embedder, rerankers: Mapping[str, object], allowed: Iterable[str] = ()):
        """The embedder's tokenizer (the default) and each reranker's, by name and by id/path."""
        known: dict[str, tuple[object | None, str]] = {}
        shown: dict[str, str] = {}
        for name, reranker in rerankers.items():
            source = getattr(reranker, "name", None) or name
            entry = (getattr(reranker, "tokenizer", None), source)
            known.setdefault(name, entry)
            known.setdefault(source, entry)
            shown.setdefault(name, name)
            shown.setdefault(source, name)
        default = getattr(embedder, "model_id", "embedder")
        tokenizers = cls(default, getattr(embedder, "tokenizer", None), known=known, allowed=allowed)
        tokenizers.shown.update(shown)
        return tokenizers

    def allow(self, names: Iterable[str]) -> None:
        """Also allow these hub ids / local directories (exactly as the requests will name them)."""
        with self._lock:
            self._allowed.update(name.strip() for name in names if name and name.strip())

    def is_allowed(self, name: str) -> bool:
        with self._lock:
            return name in self._known or name in self._allowed

    def check(self, name: str | None) -> str:
        """The tokenizer name a request gets; 400 `context_tokenizer_not_allowed` for any other."""
        name = name or self.default_name
        if not self.is_allowed(name):
            raise InvalidRequestError(
                f"context_tokenizer {name!r} is not allowed: use the embedder's (the default), a "
                "loaded reranker's (by its name in GET /v1/rerankers, or its id/path) or one "
                "listed in RAG_CONTEXT_TOKENIZERS",
                code="context_tokenizer_not_allowed",
            )
        return name

    def get(self, name: str | None) -> tuple[str, object, threading.Lock]:
        name = self.check(name)
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return (name, *self._loaded[name])
        tokenizer, source = self._known.get(name, (None, name))
        if tokenizer is not None:  # a loaded model's: a private copy, nothing read from disk
            tokenizer = _require_fast(name, copy.deepcopy(tokenizer))
        else:
            tokenizer = self._load(source)
        with self._lock:
            self._loaded.setdefault(name, (tokenizer, threading.Lock()))
            while len(self._loaded) > MAX_LOADED_TOKENIZERS:
                oldest = next(iter(self._loaded))
                if oldest == self.default_name:
                    self._loaded.move_to_end(oldest)
                    oldest = next(iter(self._loaded))
                del self._loaded[oldest]
            return (name, *self._loaded[name])

    @staticmethod
    def _load(name: str):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except Exception as exc:  # noqa: BLE001 - any failure is the request's tokenizer name
            raise InvalidRequestError(
                f"context_tokenizer {name!r} could not be loaded as a Hugging Face tokenizer "
                f"(hub id or local directory): {type(exc).__name__}",
                code="context_tokenizer_not_found",
            ) from None
        return _require_fast(name, tokenizer)

    def counter(self, name: str | None) -> tuple[str, Callable[[str], int], Callable[[str, int], str]]:
        """(name, count(text), prefix(text, n tokens)) for the named tokenizer.

        The Rust backend counts with truncation off: a text longer than the model's maximum is
        counted whole (packing cuts it on purpose, `truncated` in its citation), without the
        transformers warning about indexing errors that does not apply to a count.
        """
        name, tokenizer, lock = self.get(name)
        backend = private_backend(tokenizer)

        def count(text: str) -> int:
            with lock:
                return len(backend.encode(text, add_special_tokens=False).ids)

        def prefix(text: str, tokens: int) -> str:
            with lock:
                offsets = backend.encode(text, add_special_tokens=False).offsets
            return text[: offsets[tokens - 1][1]] if tokens > 0 and offsets else ""

        return self.shown.get(name) or display_name(name), count, prefix


def _require_fast(name: str, tokenizer):
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidRequestError(
            f"context_tokenizer {name!r} has no fast tokenizer", code="context_tokenizer_not_found"
        )
    return tokenizer


@dataclass
class _Block:
    document_id: str
    pieces: list[dict] = field(default_factory=list)

    def touches(self, passage: dict) -> bool:
        if passage["document_id"] != self.document_id:
            return False
        for piece in self.pieces:
            if passage["start"] <= piece["end"] and passage["end"] >= piece["start"]:
                return True
            ordinals = (piece.get("ordinal"), passage.get("ordinal"))
            if None not in ordinals and abs(ordinals[0] - ordinals[1]) == 1:
                return True
        return False

    def text(self) -> str:
        pieces = sorted(self.pieces, key=lambda p: (p["start"], -p["end"]))
        text, end = pieces[0]["text"], pieces[0]["end"]
        for piece in pieces[1:]:
            if piece["end"] <= end:
                continue
            if piece["start"] >= end:
                gap = piece["start"] - end
                text += ("" if gap == 0 else " " if gap == 1 else "\n\n") + piece["text"]
            else:
                text += piece["text"][end - piece["start"] :]
            end = piece["end"]
        return text

    def citation(self, number: int) -> dict:
        first = min(self.pieces, key=lambda p: p["start"])
        meta = first.get("chunk_metadata") or {}
        return {
            "id": number,
            "document_id": self.document_id,
            "source": first.get("source"),
            "start": first["start"],
            "end": max(p["end"] for p in self.pieces),
            "page": meta.get("page"),
            "heading_path": meta.get("heading_path"),
            "chunk_ids": sorted(p["chunk_id"] for p in self.pieces),
            "ranks": sorted(p["rank"] for p in self.pieces),
            "truncated": False,
        }


def _merge(blocks: list[_Block], passage: dict) -> list[_Block]:
    """`blocks` with `passage` added: into the first block it touches (joining blocks it bridges)."""
    blocks = [_Block(b.document_id, list(b.pieces)) for b in blocks]
    touching = [b for b in blocks if b.touches(passage)]
    if not touching:
        return [*blocks, _Block(passage["document_id"], [passage])]
    target = touching[0]
    target.pieces.append(passage)
    for other in touching[1:]:
        target.pieces.extend(other.pieces)
        blocks.remove(other)
    return blocks


def _render(texts: list[str]) -> str:
    return "\n\n".join(f"[{n}] {text}" for n, text in enumerate(texts, start=1))


def pack_context(passages: list[dict], budget: int, count: Callable[[str], int], prefix: Callable[[str, int], str]) -> dict:
    """Pack `passages` (best first, result dicts) into at most `budget` tokens."""
    blocks: list[_Block] = []
    skipped: list[int] = []
    rendered, tokens = "", 0
    for passage in passages:
        trial = _merge(blocks, passage)
        text = _render([b.text() for b in trial])
        used = count(text)
        if used <= budget:
            blocks, rendered, tokens = trial, text, used
        else:
            skipped.append(passage["rank"])
    citations = [b.citation(n) for n, b in enumerate(blocks, start=1)]
    if not blocks and passages:
        rendered, tokens, citations = _truncated(passages[0], budget, count, prefix)
        skipped = [p["rank"] for p in passages[1:]]
    return {"text": rendered, "tokens": tokens, "citations": citations, "skipped_ranks": skipped}


def _truncated(passage: dict, budget: int, count, prefix) -> tuple[str, int, list[dict]]:
    """The best passage cut to the longest token prefix whose rendered context fits."""
    low, high, best = 0, count(passage["text"]), ("", 0)
    while low <= high:
        middle = (low + high) // 2
        text = prefix(passage["text"], middle)
        rendered = f"[1] {text}" if text else ""
        used = count(rendered)
        if used <= budget:
            best, low = (text, used), middle + 1
        else:
            high = middle - 1
    text, used = best
    if not text:
        return "", 0, []
    block = _Block(passage["document_id"], [passage])
    citation = block.citation(1)
    citation["end"] = passage["start"] + len(text)
    citation["truncated"] = True
    log.debug("context: passage %s of %s cut to %d of its %d characters to fit %d tokens",
              passage.get("chunk_id"), passage["document_id"], len(text), len(passage["text"]), budget)
    return f"[1] {text}", used, [citation]
