"""BEIR-format datasets: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

Only `_id` and `text` of a query are read: BEIR keeps a `metadata` field on queries, and for
SciFact it holds the gold evidence (relevant doc ids and labels), which a system must not see.
A document's text is `title + " " + text`, stripped, as MTEB builds it for a bi-encoder.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from search_service.errors import InvalidRequestError


@dataclass(frozen=True)
class CorpusDocument:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """What MTEB embeds: `(title + " " + text).strip()`."""
        return f"{self.title} {self.text}".strip()


@dataclass
class Dataset:
    name: str
    path: Path
    split: str
    corpus: list[CorpusDocument]
    queries: dict[str, str]  # judged queries of the split only, in qrels file order
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    sampled_from: int | None = None  # the full corpus size when `sampled` cut it


    def limited(self, limit: int | None) -> Dataset:
        """The first `limit` judged queries (all when None); the corpus is kept whole."""
        if limit is None or limit >= len(self.queries):
            return self
        keep = list(self.queries)[:limit]
        return Dataset(self.name, self.path, self.split, self.corpus,
                       {q: self.queries[q] for q in keep}, {q: self.qrels[q] for q in keep},
                       self.sampled_from)

    def sampled(self, size: int | None, seed: int = 0) -> Dataset:
        """The corpus cut to `size` documents: every document judged for the kept queries, plus a
        seeded random sample of the others (corpus order kept). Figures on a sampled corpus are
        easier than on the whole one, so they are not comparable with published results."""
        if size is None or size >= len(self.corpus):
            return self
        judged = {doc for judgments in self.qrels.values() for doc in judgments}
        others = [doc.id for doc in self.corpus if doc.id not in judged]
        extra = max(0, size - sum(1 for doc in self.corpus if doc.id in judged))
        keep = judged | set(random.Random(seed).sample(others, min(extra, len(others))))
        corpus = [doc for doc in self.corpus if doc.id in keep]
        return Dataset(self.name, self.path, self.split, corpus, self.queries, self.qrels, len(self.corpus))


def _bad(path: Path, line: int, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"{path}:{line}: {why}", code="invalid_dataset")


def _jsonl(path: Path):
    if not path.is_file():
        raise InvalidRequestError(f"{path} is missing (a BEIR dataset folder holds corpus.jsonl, "
                                  "queries.jsonl and qrels/<split>.tsv)", code="invalid_dataset")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise _bad(path, number, f"not JSON ({exc})") from None
            if not isinstance(row, dict) or "_id" not in row:
                raise _bad(path, number, "expected a JSON object with an _id")
            yield number, row


def load_corpus(path: Path) -> list[CorpusDocument]:
    documents, seen = [], set()
    for number, row in _jsonl(path):
        doc_id = str(row["_id"])
        if doc_id in seen:
            raise _bad(path, number, f"duplicate _id {doc_id!r}")
        seen.add(doc_id)
        documents.append(CorpusDocument(doc_id, str(row.get("title") or ""), str(row.get("text") or "")))
    return documents


def load_queries(path: Path) -> dict[str, str]:
    """`_id` -> `text`; every other field (SciFact's gold `metadata`) is dropped here."""
    return {str(row["_id"]): str(row.get("text") or "") for _, row in _jsonl(path)}


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {doc id: relevance}, from a TSV with a `query-id corpus-id score` header."""
    if not path.is_file():
        raise InvalidRequestError(f"{path} is missing", code="invalid_dataset")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for number, row in enumerate(reader, start=1):
            if not row or (number == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise _bad(path, number, f"expected 3 tab-separated fields, got {len(row)}")
            try:
                score = int(row[2])
            except ValueError:
                raise _bad(path, number, f"score {row[2]!r} is not an integer") from None
            qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


def load_dataset(path: Path, split: str = "test") -> Dataset:
    """Load a BEIR folder; only queries judged in `qrels/<split>.tsv` are kept."""
    path = Path(path)
    corpus = load_corpus(path / "corpus.jsonl")
    all_queries = load_queries(path / "queries.jsonl")
    qrels = load_qrels(path / "qrels" / f"{split}.tsv")
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        raise InvalidRequestError(
            f"{len(missing)} judged queries of {split} are not in queries.jsonl (first: {missing[0]!r})",
            code="invalid_dataset",
        )
    queries = {q: all_queries[q] for q in qrels}
    return Dataset(path.resolve().name, path, split, corpus, queries, qrels)
