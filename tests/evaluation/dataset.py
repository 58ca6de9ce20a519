"""A tiny BEIR dataset written by the tests, and a SciFact subset read from ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

from search_service.evaluation.beir import Dataset, load_dataset
from tests.conftest import SHARED_DATA
from tests.support.documents import DOCUMENTS, PARAPHRASES

SCIFACT = SHARED_DATA / "scifact"
NO_SCIFACT = f"SciFact is not at {SCIFACT} (the shared data folder beside the checkout, ../shared/data)"

TINY_IDS = ["panda.md", "volcano.txt", "coffee.txt", "gil.md"]


def write_tiny(folder: Path) -> Path:
    """Four documents (title + text), one paraphrased query each, plus a query judged on two."""
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc_id in TINY_IDS:
            title, _, body = DOCUMENTS[doc_id].lstrip("# ").partition("\n") if doc_id.endswith(".md") else ("", "", DOCUMENTS[doc_id])
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": body.strip()}) + "\n")
    queries = {f"q-{doc_id}": PARAPHRASES[doc_id] for doc_id in TINY_IDS}
    queries["q-both"] = "animals and hot drinks"
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, text in queries.items():
            # gold evidence in metadata, as in SciFact: the loader must not pass it on
            handle.write(json.dumps({"_id": query_id, "text": text, "metadata": {"gold": "secret"}}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"q-{d}\t{d}\t1" for d in TINY_IDS]
    lines += ["q-both\tpanda.md\t1", "q-both\tcoffee.txt\t1"]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def scifact_subset(n_queries: int = 20, n_docs: int = 100) -> Dataset:
    """The first `n_queries` judged test queries, their relevant documents, and other documents
    in corpus order up to `n_docs`: every judged document is in the corpus."""
    full = load_dataset(SCIFACT, "test").limited(n_queries)
    relevant = {doc for judged in full.qrels.values() for doc in judged}
    corpus = [doc for doc in full.corpus if doc.id in relevant]
    corpus += [doc for doc in full.corpus if doc.id not in relevant][: n_docs - len(corpus)]
    return Dataset("scifact-subset", full.path, full.split, corpus, full.queries, full.qrels)
