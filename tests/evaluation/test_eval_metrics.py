"""BEIR metrics: hand-checkable cases, and an independent implementation of BEIR's definitions."""

import math
import random

import pytest
import pytrec_eval

from search_service.evaluation.metrics import DEFAULT_METRICS, evaluate, per_query, top


def dcg(gains):
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def reference(qrels, run):
    """BEIR's definitions written out: nDCG@10 (linear gain), Recall@k, MRR@10; missing run -> 0."""
    values = {name: [] for name in DEFAULT_METRICS}
    for query, judged in qrels.items():
        ranked = [d for d, _ in sorted(run.get(query, {}).items(), key=lambda x: (x[1], x[0]), reverse=True)]
        relevant = {d for d, s in judged.items() if s > 0}
        ideal = dcg(sorted((s for s in judged.values() if s > 0), reverse=True)[:10])
        values["nDCG@10"].append(dcg([judged.get(d, 0) for d in ranked[:10]]) / ideal)
        for k in (10, 50, 100):
            values[f"Recall@{k}"].append(len(relevant & set(ranked[:k])) / len(relevant))
        first = next((i for i, d in enumerate(ranked[:10]) if d in relevant), None)
        values["MRR@10"].append(0.0 if first is None else 1 / (first + 1))
    return {name: sum(v) / len(v) for name, v in values.items()}


def test_hand_checkable_case():
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 1}}
    run = {"q1": {"x": 3.0, "a": 2.0, "y": 1.5, "b": 1.0}, "q2": {"c": 9.0, "z": 1.0}}
    got = per_query(qrels, run)
    # q1: relevant at ranks 2 and 4; ideal: ranks 1 and 2.
    assert got["nDCG@10"]["q1"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert got["MRR@10"]["q1"] == pytest.approx(1 / 2)
    assert got["nDCG@10"]["q2"] == pytest.approx(1.0)
    assert got["Recall@10"] == {"q1": 1.0, "q2": 1.0}
    means = evaluate(qrels, run)
    assert means["MRR@10"] == pytest.approx((1 / 2 + 1) / 2)


def test_mrr_is_cut_at_ten_and_recall_at_its_k():
    qrels = {"q": {"hit": 1}}
    run = {"q": {f"d{i:02d}": 100.0 - i for i in range(11)} | {"hit": 100.0 - 11}}  # the hit is 12th
    got = evaluate(qrels, run)
    assert got["MRR@10"] == 0.0
    assert got["Recall@10"] == 0.0 and got["Recall@50"] == 1.0
    plain = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"]
    assert plain == pytest.approx(1 / 12)  # uncut trec_eval reciprocal rank differs: the cut matters


def test_a_query_with_no_results_counts_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    got = evaluate(qrels, {"q1": {"a": 1.0}})  # q2 missing from the run
    assert got["nDCG@10"] == pytest.approx(0.5)
    assert got["Recall@100"] == pytest.approx(0.5)


def test_graded_relevance_uses_linear_gain():
    qrels = {"q": {"a": 2, "b": 1}}
    run = {"q": {"b": 2.0, "a": 1.0}}
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert evaluate(qrels, run)["nDCG@10"] == pytest.approx(expected)


def test_top_orders_like_trec_eval():
    assert list(top({"q": {"a": 1.0, "b": 1.0, "c": 2.0}}, 2)["q"]) == ["c", "b"]  # ties: id descending


def test_matches_beir_definitions_on_random_runs():
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(300)]
    qrels = {f"q{i}": {d: rng.choice([1, 1, 2]) for d in rng.sample(docs, rng.randint(1, 6))} for i in range(40)}
    run = {q: {d: rng.random() for d in rng.sample(docs, rng.randint(0, 150))} for q in qrels}
    got, want = evaluate(qrels, run), reference(qrels, run)
    for name in DEFAULT_METRICS:
        assert got[name] == pytest.approx(want[name], abs=1e-9), name
