"""Chinese without punctuation or spaces, longer than a chunk, with three kinds of tokenizer.

- all-MiniLM-L6-v2 (BERT WordPiece, the real embedder): one token per CJK character, `[UNK]` for
  characters outside its vocabulary.
- the tiny XLM-R tokenizer (SentencePiece-style Unigram, as bge-m3 and bge-reranker-v2-m3): the
  whole run is one "word" cut into multi-character pieces, unknown characters fused into one
  `<unk>`.
- the tiny Gemma tokenizer (byte-fallback BPE): a character outside its alphabet becomes three
  `<0xNN>` byte tokens sharing one character span, so a token boundary can fall inside a
  character; a chunk must never end or start there.

The run has no sentence end, line break or space: every cut is at a CJK character boundary.
"""

from __future__ import annotations

import itertools
import random
import unicodedata

import pytest
from transformers import AutoTokenizer

from ingestion.chunking import Chunker
from ingestion.tokens import private_backend
from search_service.testing.minilm import minilm_path
from search_service.testing.tiny_encoder import CORPUS_ZH, _train_tokenizer
from search_service.testing.tiny_llm import build_tokenizer

CHUNK_TOKENS, OVERLAP = 64, 16
# The tiny tokenizers' Chinese sentences without punctuation, their single characters, and three
# characters none of the tokenizers knows: 龍 and 鑫 (3 UTF-8 bytes) and U+20000 (4 UTF-8 bytes,
# a surrogate pair in UTF-16), glued into one run.
SENTENCES = [
    "".join(c for c in text if unicodedata.category(c).startswith("L")) for text in CORPUS_ZH
]
POOL = SENTENCES + sorted(set("".join(SENTENCES))) + ["龍", "鑫", "龍鑫", "\U00020000"]


def _run(length: int, seed: int = 5) -> str:
    rng, run = random.Random(seed), ""
    while len(run) < length:
        run += rng.choice(POOL)
    return run[:length]


RUN = _run(700)
TEXT = f"Intro line.\n\n{RUN}\n\nEnd."
RUN_START, RUN_END = TEXT.index(RUN), TEXT.index(RUN) + len(RUN)


def tokenizers():
    return {
        "minilm-wordpiece": lambda: AutoTokenizer.from_pretrained(minilm_path()),
        "xlmr-unigram": lambda: _train_tokenizer(400),
        "gemma-byte-fallback": build_tokenizer,
    }


@pytest.fixture(scope="module", params=list(tokenizers()))
def tokenizer(request):
    return request.param, tokenizers()[request.param]()


def encode(tokenizer, text: str):
    return private_backend(tokenizer).encode(text, add_special_tokens=False)


def test_the_tokenizers_split_the_run_as_described(tokenizer):
    name, tok = tokenizer
    full = encode(tok, RUN)
    assert len(full.ids) > 10 * CHUNK_TOKENS  # the run is many chunks long
    spans = list(full.offsets)
    if name == "gemma-byte-fallback":  # 龍 is three byte tokens over one character
        dragon = RUN.index("龍")
        assert spans.count((dragon, dragon + 1)) == 3
    if name == "xlmr-unigram":  # pieces of several characters
        assert any(end - start > 1 for start, end in spans)


def test_an_unpunctuated_chinese_run_is_cut_between_characters(tokenizer):
    name, tok = tokenizer
    chunks = Chunker(tok, CHUNK_TOKENS, OVERLAP).chunk(TEXT)
    full = encode(tok, TEXT)
    starts = {start for start, _ in full.offsets}
    ends = {end for _, end in full.offsets}
    assert len(chunks) > 10
    for chunk in chunks:
        # offsets point at the right characters, and the text is whole Unicode characters
        assert TEXT[chunk.start : chunk.end] == chunk.text
        assert chunk.text.encode("utf-8").decode("utf-8") == chunk.text
        assert (
            not any(0xD800 <= ord(c) <= 0xDFFF for c in chunk.text) and "\ufffd" not in chunk.text
        )
        # each edge is an edge of the whole text's tokens, never inside a token or a character
        assert chunk.start in starts and chunk.end in ends
        assert not any(s < chunk.start < e or s < chunk.end < e for s, e in full.offsets)
        # re-tokenized alone, the chunk has the stored count, within the budget
        alone = encode(tok, chunk.text)
        assert chunk.token_count == len(alone.ids) <= CHUNK_TOKENS
        if name == "gemma-byte-fallback":  # byte pieces decode back to whole characters
            assert private_backend(tok).decode(alone.ids) == chunk.text
        if name == "minilm-wordpiece":  # one token per character: the same tokens as in the text
            inside = [
                i
                for i, (s, e) in zip(full.ids, full.offsets)
                if chunk.start <= s and e <= chunk.end
            ]
            assert alone.ids == inside


def test_chunks_cover_the_run_with_the_configured_overlap(tokenizer):
    _, tok = tokenizer
    chunks = Chunker(tok, CHUNK_TOKENS, OVERLAP).chunk(TEXT)
    full = encode(tok, TEXT)
    in_run = [c for c in chunks if c.end > RUN_START and c.start < RUN_END]
    assert in_run[0].start <= RUN_START and in_run[-1].end >= RUN_END
    covered = set()
    for chunk in in_run:
        covered.update(range(max(chunk.start, RUN_START), min(chunk.end, RUN_END)))
    assert covered == set(range(RUN_START, RUN_END))
    for before, after in itertools.pairwise(in_run):
        assert before.start < after.start < before.end < after.end
        if after.end > RUN_END:
            continue  # the last chunk may end at the paragraph after the run
        # the next chunk starts between OVERLAP and OVERLAP / 2 tokens before the previous end
        shared = sum(1 for s, e in full.offsets if after.start <= s and e <= before.end)
        assert OVERLAP // 2 <= shared <= OVERLAP, (before, after, shared)
