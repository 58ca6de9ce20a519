"""Training lines in FlagEmbedding's format, `{"query", "pos", "neg", "prompt"}`, from judged
queries and an indexed collection, with negatives mined by the service's own first stage.

Passages are chunk texts as the collection stores them, since those are what the reranker scores
at search time. A relevant document's positive is its best chunk in the first stage's top
`depth` for that query, or its first chunk when the first stage missed it. Hard negatives are a
seeded sample of the `hard_negatives` from the first stage's top `depth` documents that are not
judged relevant (one chunk each, the best); random negatives are chunks drawn from the rest of
the collection. Held-out dev queries also keep the first stage's ranked candidates
(`candidates`: chunk text, document id, first-stage score) and their `relevant` ids, which
`finetune` reranks to report dev figures and pick the dense-fusion weight.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import select
from tqdm.auto import tqdm

from search_service.errors import InvalidRequestError
from search_service.finetuning.judgments import Judged, split_dev
from search_service.store import collections as store
from search_service.store.models import Chunk, Document


@dataclass(frozen=True)
class MiningOptions:
    mode: str = "dense"  # the first stage: dense or hybrid
    depth: int = 30  # first-stage chunks searched per query
    hard_negatives: int = 3
    random_negatives: int = 1
    dev_queries: int = 50
    seed: int = 0
    prompt: str = ""
    skip_missing: bool = False  # drop judged ids the collection lacks instead of failing
    progress: bool = True


def _chunk_table(session, collection) -> tuple[list[int], list[str], dict[str, int]]:
    """(chunk ids, their documents' external ids, external id -> first chunk id), in id order."""
    rows = session.execute(
        select(Chunk.id, Document.external_id, Chunk.ordinal)
        .join(Document, Chunk.document_id == Document.id)
        .where(Chunk.collection_id == collection.id)
        .order_by(Chunk.id)
    ).all()
    first: dict[str, tuple[int, int]] = {}
    for chunk_id, external_id, ordinal in rows:
        if external_id not in first or ordinal < first[external_id][1]:
            first[external_id] = (chunk_id, ordinal)
    return [r[0] for r in rows], [r[1] for r in rows], {d: c for d, (c, _) in first.items()}


def check_judged_ids(judged: list[Judged], known: set[str], collection: str, skip_missing: bool) -> list[Judged]:
    missing = sorted({d for j in judged for d in j.relevant if d not in known})
    if missing and not skip_missing:
        raise InvalidRequestError(
            f"{len(missing)} judged document ids are not in collection {collection!r} (first: "
            f"{', '.join(repr(m) for m in missing[:3])}); index them, or pass --skip-missing to drop them",
            code="invalid_judgments",
        )
    kept = [Judged(j.id, j.text, tuple(d for d in j.relevant if d in known)) for j in judged]
    kept = [j for j in kept if j.relevant]
    if not kept:
        raise InvalidRequestError(f"no judged query has a relevant document in collection {collection!r}",
                                  code="invalid_judgments")
    return kept


def mine(services, collection: str, judged: list[Judged], output: Path, options: MiningOptions) -> dict:
    """Write `train.jsonl`, `dev.jsonl` and `manifest.json` into `output`; return the manifest."""
    if options.mode not in ("dense", "hybrid"):
        raise InvalidRequestError(f"mode must be dense or hybrid, not {options.mode!r}", code="invalid_mode")
    with services.database.session() as session:
        stored = store.get_collection(session, collection)
        chunk_ids, chunk_docs, first_chunk = _chunk_table(session, stored)
    judged = check_judged_ids(judged, set(first_chunk), collection, options.skip_missing)
    _train, dev = split_dev(judged, options.dev_queries, options.seed) if options.dev_queries else (judged, [])
    held = {j.id for j in dev}
    rng = random.Random(options.seed)
    output.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "dev": 0, "pairs": 0, "positives_missed_by_first_stage": 0}
    with (output / "train.jsonl").open("w", encoding="utf-8") as train_file, \
            (output / "dev.jsonl").open("w", encoding="utf-8") as dev_file:
        for query in tqdm(judged, desc=f"mining negatives ({options.mode} top {options.depth})", unit="query",
                          disable=not options.progress):
            response = services.search.search(collection, query.text, top_k=options.depth,
                                              candidates=options.depth, rerank=False, mode=options.mode)
            results = response["results"]
            relevant = set(query.relevant)
            best: dict[str, dict] = {}
            for result in results:
                best.setdefault(result["document_id"], result)
            missed = [d for d in query.relevant if d not in best]
            counts["positives_missed_by_first_stage"] += len(missed)
            extra = _texts(services, collection, [first_chunk[d] for d in missed])
            positives = [best[d]["text"] if d in best else extra[first_chunk[d]] for d in query.relevant]
            hard_pool = [(d, r["text"]) for d, r in best.items() if d not in relevant]
            hard = rng.sample(hard_pool, min(options.hard_negatives, len(hard_pool)))
            taken = relevant | {d for d, _ in hard}
            randoms = _random_chunks(rng, chunk_ids, chunk_docs, taken, options.random_negatives)
            texts = _texts(services, collection, randoms)
            negatives = [text for _, text in hard] + [texts[c] for c in randoms if c in texts]
            line = {"query": query.text, "pos": positives, "neg": negatives, "prompt": options.prompt,
                    "id": query.id}
            if query.id in held:
                line["relevant"] = list(query.relevant)
                line["candidates"] = [{"document_id": r["document_id"], "text": r["text"], "score": r["score"]}
                                      for r in results]
                dev_file.write(json.dumps(line, ensure_ascii=False) + "\n")
                counts["dev"] += 1
            else:
                train_file.write(json.dumps(line, ensure_ascii=False) + "\n")
                counts["train"] += 1
                counts["pairs"] += len(positives) + len(negatives)
    manifest = {
        "collection": collection,
        "embedder_model": getattr(services.embedder, "model_id", services.settings.embedder_model),
        "chunks": len(chunk_ids),
        "documents": len(first_chunk),
        "options": {k: v for k, v in asdict(options).items() if k != "progress"},
        **counts,
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _random_chunks(rng: random.Random, chunk_ids: Sequence[int], chunk_docs: Sequence[str], taken: set[str],
                   count: int) -> list[int]:
    """Up to `count` chunks of distinct documents outside `taken`, drawn with `rng`."""
    chosen: list[int] = []
    seen = set(taken)
    for _ in range(count * 20):
        if len(chosen) == count or not chunk_ids:
            break
        i = rng.randrange(len(chunk_ids))
        if chunk_docs[i] not in seen:
            seen.add(chunk_docs[i])
            chosen.append(chunk_ids[i])
    return chosen


def _texts(services, collection: str, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    with services.database.session() as session:
        rows = store.chunks_by_id(session, store.get_collection(session, collection), ids)
    return {chunk_id: chunk.text for chunk_id, (chunk, _) in rows.items()}
