"""Judged queries: `query -> relevant document ids`, from BEIR files or a JSONL.

BEIR: `queries.jsonl` (`_id`, `text`) and a qrels TSV (`query-id corpus-id score`); a document
with score > 0 is relevant, and a query none of whose documents is relevant is dropped (BEIR's
own convention). JSONL: one object a line, `{"query": "...", "relevant": ["doc-id", ...]}`, with
an optional `"id"`; an empty or missing `relevant` is an error, since such a query trains nothing.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from search_service.errors import InvalidRequestError
from search_service.evaluation.beir import load_qrels, load_queries


@dataclass(frozen=True)
class Judged:
    id: str
    text: str
    relevant: tuple[str, ...]  # external document ids, in file order


def _bad(path: Path, line: int, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"{path}:{line}: {why}", code="invalid_judgments")


def load_jsonl(path: Path) -> list[Judged]:
    path = Path(path)
    if not path.is_file():
        raise InvalidRequestError(f"{path} is missing", code="invalid_judgments")
    judged: list[Judged] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise _bad(path, number, f"not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise _bad(path, number, 'expected an object {"query": "...", "relevant": ["doc-id", ...]}')
            query = row.get("query")
            if not isinstance(query, str) or not query.strip():
                raise _bad(path, number, '"query" must be a non-empty string')
            relevant = row.get("relevant")
            if not isinstance(relevant, list) or not all(isinstance(r, (str, int)) for r in relevant):
                raise _bad(path, number, '"relevant" must be a list of document ids')
            if not relevant:
                raise _bad(path, number, f'"relevant" is empty for query {query[:60]!r}: a judged query '
                           "needs at least one relevant document")
            judged.append(Judged(str(row.get("id", number)), query, tuple(dict.fromkeys(map(str, relevant)))))
    if not judged:
        raise InvalidRequestError(f"{path} holds no judged queries", code="invalid_judgments")
    ids = [j.id for j in judged]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise InvalidRequestError(f"{path}: query id {duplicate!r} appears twice", code="invalid_judgments")
    return judged


def load_beir(queries_path: Path, qrels_path: Path) -> list[Judged]:
    queries = load_queries(Path(queries_path))
    qrels = load_qrels(Path(qrels_path))
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise InvalidRequestError(
            f"{len(missing)} judged queries of {qrels_path} are not in {queries_path} (first: {missing[0]!r})",
            code="invalid_judgments",
        )
    judged = [
        Judged(q, queries[q], tuple(d for d, score in docs.items() if score > 0)) for q, docs in qrels.items()
    ]
    judged = [j for j in judged if j.relevant]
    if not judged:
        raise InvalidRequestError(f"{qrels_path} judges no document relevant (score > 0)", code="invalid_judgments")
    return judged


def split_dev(judged: list[Judged], dev_queries: int, seed: int) -> tuple[list[Judged], list[Judged]]:
    """(train, dev): `dev_queries` of them drawn with `seed`, each list in input order."""
    if dev_queries >= len(judged):
        raise InvalidRequestError(
            f"--dev-queries {dev_queries} leaves no training query ({len(judged)} judged)", code="invalid_judgments"
        )
    held = set(random.Random(seed).sample(range(len(judged)), dev_queries))
    return ([j for i, j in enumerate(judged) if i not in held], [j for i, j in enumerate(judged) if i in held])
