"""`load` takes each family's own options (`FamilyLoader.load`) and refuses any other with a
TypeError before anything is read: the checkpoint here does not exist."""

from __future__ import annotations

import re

import pytest

from search_service.errors import ModelLoadError
from search_service.rerankers.checkpoint import Checkpoint
from search_service.rerankers.families.encoder import EncoderReranker
from search_service.rerankers.families.layerwise import LayerwiseReranker
from search_service.rerankers.families.lightweight import LightweightReranker
from search_service.rerankers.families.llm import LLMReranker
from search_service.rerankers.families.mxbai import MxbaiReranker
from search_service.rerankers.families.qwen3 import Qwen3Reranker

MISSING = Checkpoint("/nonexistent/reranker", {})
COMMON = ("max_length", "batch_size", "attn_implementation")
# family -> (the load options it takes besides COMMON, some it refuses)
LOAD_OPTIONS = {
    EncoderReranker: (("query_max_length", "trust_remote_code"), ("prompt", "config", "model")),
    LLMReranker: (("query_max_length", "prompt", "trust_remote_code"), ("cutoff_layers",)),
    MxbaiReranker: (("query_max_length", "prompt", "trust_remote_code"), ("tokenizer",)),
    Qwen3Reranker: (("prompt", "trust_remote_code"), ("query_max_length", "name")),
    LayerwiseReranker: (
        ("query_max_length", "prompt", "cutoff_layers"),
        ("trust_remote_code", "compress_ratio"),
    ),
    LightweightReranker: (
        (
            "query_max_length",
            "prompt",
            "cutoff_layers",
            "compress_ratio",
            "compress_layers",
            "attn_logit_softcapping",
        ),
        ("trust_remote_code", "device_map"),
    ),
}
CASES = [(family, name, True) for family, (ok, _) in LOAD_OPTIONS.items() for name in COMMON + ok]
CASES += [(family, name, False) for family, (_, bad) in LOAD_OPTIONS.items() for name in bad]


@pytest.mark.parametrize(("family", "name", "accepted"), CASES)
def test_load_takes_only_the_family_options(family, name, accepted):
    value = None if name == "attn_implementation" else 1
    if accepted:  # the option passes; the missing checkpoint is what fails
        with pytest.raises(ModelLoadError):
            family.load(MISSING, device="cpu", dtype=None, **{name: value})
    else:
        message = f"{family.__name__}.load() got an unexpected keyword argument {name!r}"
        with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
            family.load(MISSING, device="cpu", dtype=None, **{name: value})
