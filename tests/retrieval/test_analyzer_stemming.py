"""BM25's stemming analyzer (retrieval/analyzer.py): Snowball stemmers by script or by the
configured language, CJK bigrams untouched, `none` as before; and the setting that picks it."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.errors import ConfigurationError
from search_service.retrieval.analyzer import Analyzer, analyze, resolve_language
from search_service.retrieval.sparse import BM25Scorer, SparseIndexManager
from search_service.settings import Settings


def test_auto_stems_each_word_by_its_script_and_keeps_cjk_and_identifiers():
    terms = Analyzer()("Mutations in CELLS, running XK-4471 大熊猫 Кошки бегают γάτες القطط")
    assert terms == ["mutat", "in", "cell", "run", "xk", "4471", "大", "熊", "猫", "大熊", "熊猫",
                     "кошк", "бега", "γατ", "قطط"]
    assert Analyzer("auto")("bge-m3で検索する") == analyze("bge-m3で検索する")


def test_a_named_language_stems_its_script_and_none_does_not_stem():
    assert Analyzer("german")("Häuser laufen Кошки") == ["haus", "lauf", "кошк"]
    assert Analyzer("de")("Häuser") == ["haus"]  # two-letter codes
    assert Analyzer("russian")("бегают running") == ["бега", "run"]  # Latin words stay English
    assert Analyzer("hindi")("running") == ["run"]  # hindi stems Devanagari words, not Latin ones
    assert Analyzer("persian").languages["arabic"] == "persian"
    assert Analyzer("none")("Mutations in CELLS") == analyze("Mutations in CELLS") == ["mutations", "in", "cells"]


def test_stemming_lets_bm25_match_other_forms_of_a_word():
    texts = ["The cells mutated after exposure.", "A report on weather.", "Cell mutation rates rose."]
    query = "mutations of cell"
    for analyzer, expected in ((Analyzer(), {10, 30}), (Analyzer("none"), {30})):
        scorer = BM25Scorer(np.array([10, 20, 30]), [analyzer(t) for t in texts])
        assert {chunk for chunk, _ in scorer.search(analyzer(query), 5, None)} == expected
    assert SparseIndexManager().analyzer.language == "auto"
    assert SparseIndexManager(analyzer=Analyzer("none")).query_terms("bm25", "cells") == ["cells"]


def test_the_setting_names_a_known_language(monkeypatch, tmp_path):
    assert resolve_language(" FR ") == "french" and resolve_language("None") == "none"
    with pytest.raises(ValueError, match="unknown sparse language 'klingon'"):
        resolve_language("klingon")
    assert Settings(data_dir=tmp_path).sparse_language == "auto"
    monkeypatch.setenv("RAG_SPARSE_LANGUAGE", "de")
    assert Settings.from_env().sparse_language == "german"
    monkeypatch.setenv("RAG_SPARSE_LANGUAGE", "klingon")
    with pytest.raises(ConfigurationError, match="RAG_SPARSE_LANGUAGE: unknown sparse language"):
        Settings.from_env()


def test_the_fusion_weight_setting_is_checked(monkeypatch):
    monkeypatch.setenv("RAG_RERANK_FUSION_DENSE_WEIGHT", "0.35")
    assert Settings.from_env().rerank_fusion_dense_weight == 0.35
    for bad in ("nan", "1.5", "-0.1"):
        monkeypatch.setenv("RAG_RERANK_FUSION_DENSE_WEIGHT", bad)
        with pytest.raises(ConfigurationError, match="RAG_RERANK_FUSION_DENSE_WEIGHT must be between 0 and 1"):
            Settings.from_env()
