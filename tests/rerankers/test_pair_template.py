"""Pairs built from the derived template equal `post_process`'s, for XLM-R and BERT layouts."""

from __future__ import annotations

import copy
import random

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from search_service.rerankers.families.pair_template import PairTemplate
from tests.rerankers.conftest import PARITY_PAIRS

WORDS = [
    "the",
    "giant",
    "panda",
    "is",
    "a",
    "bear",
    "species",
    "endemic",
    "to",
    "china",
    "熊猫",
    "主要",
    "吃",
    "竹子",
    "bamboo",
]


def random_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    text = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))
    return [(text(rng.randint(0, 40)), text(rng.randint(0, 300))) for _ in range(count)]


def bert_like(backend: Tokenizer) -> Tokenizer:
    """The same vocabulary with BERT's frame: [CLS] A [SEP] B [SEP], segment ids 0 then 1."""
    tokenizer = Tokenizer.from_str(backend.to_str())
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s>:0 $A:0 </s>:0 $B:1 </s>:1",
        special_tokens=[
            ("<s>", tokenizer.token_to_id("<s>")),
            ("</s>", tokenizer.token_to_id("</s>")),
        ],
    )
    return tokenizer


def test_template_reads_the_xlmr_frame(shared_reranker):
    template = PairTemplate.derive(shared_reranker._backend)
    bos, eos = (shared_reranker._backend.token_to_id(token) for token in ("<s>", "</s>"))
    assert template == PairTemplate(
        prefix=(bos,),
        middle=(eos, eos),
        suffix=(eos,),
        prefix_types=(0,),
        middle_types=(0, 0),
        suffix_types=(0,),
        first_type=0,
        second_type=0,
    )


def test_template_reads_segment_ids(shared_reranker):
    template = PairTemplate.derive(bert_like(shared_reranker._backend))
    assert (template.first_type, template.second_type) == (0, 1)
    assert template.middle_types == (0,) and template.suffix_types == (1,)


def test_no_template_when_the_frame_cannot_be_located():
    # Every probe token has the special token's id, so the sequences' places in the pair are
    # ambiguous: the reranker must fall back to post_process rather than guess.
    backend = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[UNK] $A", pair="[UNK] $A [UNK] $B", special_tokens=[("[UNK]", 0)]
    )
    assert PairTemplate.derive(backend) is None
    backend.post_processor = processors.TemplateProcessing(
        single="$A", pair="$A $B:1", special_tokens=[]
    )
    assert PairTemplate.derive(backend) is not None  # no special tokens: nothing to place


@pytest.mark.parametrize("layout", ["xlmr", "bert"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("max_length", [8, 24, 64, 512])
def test_template_pairs_equal_post_process(shared_reranker, layout, side, max_length):
    reranker = copy.deepcopy(shared_reranker)
    if layout == "bert":
        reranker._backend = bert_like(reranker._backend)
        reranker._template = PairTemplate.derive(reranker._backend)
        reranker._pair_special_tokens = reranker._backend.post_processor.num_special_tokens_to_add(
            True
        )
    reranker._truncation_side = side
    pairs = PARITY_PAIRS + random_pairs(40)
    fast = reranker.tokenize(pairs, max_length)
    query_max_length = max(1, max_length * 3 // 4)
    general = reranker._tokenize_with_post_process(pairs, max_length, query_max_length)
    assert reranker._template is not None
    assert [(f.input_ids, f.token_type_ids) for f in fast] == [
        (g.input_ids, g.token_type_ids) for g in general
    ]
    assert max(len(f) for f in fast) <= query_max_length + max_length + 4


def test_reranker_without_template_scores_the_same(shared_reranker):
    reranker = copy.deepcopy(shared_reranker)
    reranker._template = None  # what a post-processor PairTemplate cannot read gets
    pairs = PARITY_PAIRS[:8]
    assert reranker.score_pairs(pairs) == pytest.approx(
        shared_reranker.score_pairs(pairs), abs=1e-6
    )
