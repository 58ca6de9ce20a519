"""Chunking with the real all-MiniLM-L6-v2 tokenizer (no mocks)."""

from __future__ import annotations

import itertools
import logging
import random
import time

import pytest
from transformers import AutoTokenizer

from ingestion.chunking import Chunker, default_chunk_size
from ingestion.parsers import Section, parse
from search_service.testing.minilm import minilm_path

WORDS = ["the", "a", "retrieval", "service", "ranks", "passages", "for", "each", "query", "using", "dense", "vectors", "and", "a", "cross", "encoder", "reranker;", "documents", "are", "parsed,", "split", "into", "chunks,", "embedded", "and", "stored", "in", "an", "index", "while", "workers", "process", "uploads", "in", "the", "background.", "latency,", "recall,", "throughput", "and", "memory", "(measured", "in", "megabytes)", "matter,", "e.g.", "for", "1,024-dimensional", "embeddings"]
CHINESE_SENTENCES = [
    "自然语言处理是人工智能的一个重要领域。",
    "检索服务先用向量召回候选段落，再用交叉编码器重新排序！",
    "文档被解析、切分成片段并写入索引。",
    "这样的系统在问答场景中非常有用吗？",
    "后台任务会处理上传的文件，并记录每个片段的位置。",
]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


def english(paragraphs: int, sentences=(2, 7), seed: int = 7) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sents = []
        for _ in range(rng.randint(*sentences)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(5, 22))]
            sents.append(" ".join(words).capitalize() + rng.choice(".!?"))
        out.append(" ".join(sents))
    return "\n\n".join(out)


def chinese(paragraphs: int, seed: int = 3) -> str:
    rng = random.Random(seed)
    return "\n\n".join(
        "".join(rng.choice(CHINESE_SENTENCES) for _ in range(rng.randint(2, 8)))
        for _ in range(paragraphs)
    )


def check(text, chunks, tokenizer, chunk_tokens):
    """The invariants every chunking must keep."""
    assert chunks, "no chunks"
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    covered = bytearray(len(text))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip()
        assert 0 < chunk.token_count <= chunk_tokens
        alone = tokenizer(chunk.text, add_special_tokens=False, verbose=False)["input_ids"]
        assert chunk.token_count == len(alone)
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start and before.end < after.end
    missed = [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
    assert not missed, f"uncovered characters at {missed[:10]}"


def test_long_english_text(tokenizer):
    text = english(120)
    chunker = Chunker(tokenizer, 128, 16)
    chunks = chunker.chunk(text)
    check(text, chunks, tokenizer, 128)
    assert len(chunks) > 20
    assert sum(c.token_count for c in chunks) / len(chunks) > 64  # chunks are not tiny
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end  # they overlap ...
        shared = chunker.count_tokens(text[after.start : before.end])
        assert 1 <= shared <= 16 + 2  # ... by about overlap_tokens
        assert text[before.end - 1] in ".!?"  # and end at sentence ends at least


def test_chunks_end_at_paragraphs_when_they_fit(tokenizer):
    text = english(80, sentences=(1, 1))  # paragraphs of at most ~50 tokens
    chunks = Chunker(tokenizer, 120, 0).chunk(text)
    check(text, chunks, tokenizer, 120)
    for before, after in itertools.pairwise(chunks):
        assert text[before.end : before.end + 2] == "\n\n"
        assert after.start == before.end + 2  # no overlap asked: the next paragraph starts it


def test_chunks_end_at_sentences_without_paragraphs(tokenizer):
    text = english(1, sentences=(80, 80))  # sentences of at most ~50 tokens
    assert "\n" not in text
    chunks = Chunker(tokenizer, 128, 16).chunk(text)
    check(text, chunks, tokenizer, 128)
    assert len(chunks) > 10
    assert all(c.text[-1] in ".!?" for c in chunks)


def test_chinese_text(tokenizer):
    text = chinese(40)  # sentences of at most 27 tokens (one per character)
    chunks = Chunker(tokenizer, 64, 8).chunk(text)
    check(text, chunks, tokenizer, 64)
    assert len(chunks) > 20
    assert all(c.text[-1] in "。！？" for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end


def test_a_word_longer_than_a_chunk(tokenizer):
    word = "pneumonoultramicroscopicsilicovolcanoconiosishippopotomonstrosesquippedaliophobia"
    url = "https://example.com/" + "/".join(f"segment{i}" for i in range(60))
    text = f"Short intro.\n\n{word} and then {url} ends here."
    chunks = Chunker(tokenizer, 8, 2).chunk(text)
    check(text, chunks, tokenizer, 8)
    assert any(c.text in word and c.text != word for c in chunks)  # split inside the word
    assert any(c.text in url and c.text != url for c in chunks)


def test_heading_paths_from_markdown(tokenizer):
    body = english(3, sentences=(2, 3), seed=11)
    source = (
        f"Preface text before any heading.\n\n# Guide\n\n{body}\n\n## Install\n\n{body}\n\n"
        f"```\n# not a heading\n```\n\n### Linux\n\n{body}\n\n# Appendix\n\n{body}\n"
    )
    doc = parse(source.encode(), filename="guide.md")
    chunks = Chunker(tokenizer, 40, 4).chunk(doc.text, doc.sections)
    check(doc.text, chunks, tokenizer, 40)
    seen = set()
    for chunk in chunks:
        expected = [s.heading_path for s in doc.sections if s.start <= chunk.start < s.end]
        assert chunk.heading_path == (expected[0] if expected else ())
        seen.add(chunk.heading_path)
    assert seen == {(), ("Guide",), ("Guide", "Install"), ("Guide", "Install", "Linux"),
                    ("Appendix",)}


def test_innermost_section_wins(tokenizer):
    text = "Outer intro sentence here. " * 4 + "Inner part sentence. " * 4
    inner = text.index("Inner")
    sections = [Section(0, len(text), ("Outer",)), Section(inner, len(text), ("Outer", "Inner"))]
    chunks = Chunker(tokenizer, 10, 0).chunk(text, sections)
    assert {c.heading_path for c in chunks if c.start >= inner} == {("Outer", "Inner")}
    assert {c.heading_path for c in chunks if c.start < inner} == {("Outer",)}


def test_short_and_empty_texts(tokenizer):
    chunker = Chunker(tokenizer, 16, 2)
    assert chunker.chunk("") == [] and chunker.chunk(" \n\n\t ") == []
    [chunk] = chunker.chunk("\n\n  Hello world.  \n")
    assert (chunk.text, chunk.start, chunk.end, chunk.token_count, chunk.ordinal) == (
        "Hello world.", 4, 16, 3, 0)


def test_tokenizer_truncation_state_does_not_leak(tokenizer, caplog):
    text = english(30)
    tokenizer("warm up", truncation=True, max_length=8)  # leaves truncation set on the backend
    with caplog.at_level(logging.WARNING):
        chunks = Chunker(tokenizer, 254, 30).chunk(text)
    assert not caplog.records  # no "sequence length is longer than the maximum" warning
    check(text, chunks, tokenizer, 254)


@pytest.mark.parametrize(("tokens", "overlap"), [(7, 0), (16, 16), (16, 20), (16, -1), (0, 0)])
def test_invalid_sizes_are_refused(tokenizer, tokens, overlap):
    with pytest.raises(ValueError, match="chunk_tokens|overlap_tokens"):
        Chunker(tokenizer, tokens, overlap)


def test_default_chunk_size():
    assert default_chunk_size(256, 2) == (254, 30)  # all-MiniLM-L6-v2
    assert default_chunk_size(8192, 2) == (512, 61)  # bge-m3, capped
    assert default_chunk_size(512, 2, max_chunk_tokens=448) == (448, 54)
    with pytest.raises(ValueError, match="at least 8"):
        default_chunk_size(9, 2)


def test_one_megabyte_chunks_in_seconds(tokenizer):
    text = english(5000, seed=5)
    text = (text * (1_000_000 // len(text) + 1))[:1_000_000]
    chunker = Chunker(tokenizer, 254, 30)
    began = time.perf_counter()
    chunks = chunker.chunk(text)
    elapsed = time.perf_counter() - began
    assert all(text[c.start : c.end] == c.text and c.token_count <= 254 for c in chunks)
    assert chunks[-1].end == len(text.rstrip())
    assert elapsed < 15, f"1 MB took {elapsed:.1f} s"  # about 2 s on 2 cores


def test_a_raw_rust_tokenizer_is_accepted_and_left_alone(tokenizer):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(f"{minilm_path()}/tokenizer.json")
    raw.enable_truncation(8)
    text = english(5)
    chunks = Chunker(raw, 64, 8).chunk(text)
    check(text, chunks, tokenizer, 64)
    assert raw.truncation["max_length"] == 8  # the caller's settings are untouched
