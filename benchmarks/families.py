#!/usr/bin/env python
"""Every reranker family at its published model's size, on one device: build, score, report.

    PYTHONPATH=. python3 benchmarks/families.py --device cuda --size real --json out.json
    PYTHONPATH=. .venv/bin/python benchmarks/families.py --size tiny --device cpu --queries 1

For each family the model is built with RANDOM weights of the published config, directly on the
device in the chosen dtype (`Model._from_config(config, dtype=...)` under `torch.device(device)`:
no checkpoint, no disk, seconds even for 9B parameters), and wrapped in our reranker class through
its constructor, so what is timed is our scoring path (`reranker.score(query, passages)`:
tokenize, batch longest first, collate, forward, postprocess) on a model of the real size:

- encoder: bge-reranker-v2-m3 (XLM-R large: 24 layers, hidden 1024, 8194 positions, 250002 tokens)
- llm: bge-reranker-v2-gemma (Gemma-2B: 18 layers, hidden 2048, 256000 tokens)
- layerwise: bge-reranker-v2-minicpm-layerwise (MiniCPM-2B: 40 layers, hidden 2304, 122753
  tokens; scored at the last layer, the family's default)
- lightweight: bge-reranker-v2.5-gemma2-lightweight (Gemma2-9B: 42 layers, hidden 3584, 256000
  tokens; last layer, no compression, the family's defaults)
- qwen3-reranker-0.6b / -4b / -8b: Qwen3-Reranker (Qwen3ForCausalLM: 28 layers, hidden 1024 /
  36 layers, hidden 2560 / 36 layers, hidden 4096; 151669 tokens), the qwen3-reranker family;
  `--max-length` is the whole input there, its chat template (~70 tokens) included
- mxbai-rerank-base-v2 / -large-v2: mxbai-rerank-v2 (Qwen2ForCausalLM on the Qwen2.5-0.5B / -1.5B
  configs: 24 layers, hidden 896 / 28 layers, hidden 1536; 151936 tokens), the mxbai-rerank
  family; `--max-length` is the pair's budget there, its chat template (~110 tokens) on top

Rows are named by benchmark entry (`FAMILY_OF` maps an entry to its reranker family). At `--size
tiny` the larger sizes of one family are the same tiny model: by default only the smallest runs.

The tokenizers are the tests' tiny ones (`search_service/testing`): their ids cover a small part of each
vocabulary, which changes nothing in the cost of a forward pass. `--size tiny` uses the tests'
tiny configs instead, so the script runs on a CPU in seconds (the smoke test does).

Each family scores `--queries` queries x `--passages` passages (lengths drawn from
`--min-tokens`..`--max-tokens` tokens of that family's tokenizer, the same draws for every family)
after one untimed warm-up query (on a GPU, an untimed pass over the same queries: first uses of
each batch shape load kernels). Reported per family: build time, pairs/s, p50/p95 latency per
query, tokenize time per query (CPU), mean tokens per pair, peak CUDA memory, dtype, batch size.
dtype `auto` is what `load_reranker` picks: float16 on a GPU (bfloat16 for the lightweight family,
Gemma2, and for qwen3-reranker and mxbai-rerank, whose weights are published in bfloat16,
when the GPU supports it), float32 on a CPU.

Peers, on the same in-memory model, pairs and batch size: sentence-transformers'
`CrossEncoder.predict` when it is importable (its own model swapped for ours; for Qwen3-Reranker
with the family's layout as a chat template, `qwen3.CHAT_TEMPLATE`, and logit(yes) - logit(no)),
for the encoder and qwen3-reranker entries, and FlagEmbedding's `FlagReranker.compute_score` with
`--flag` when that is importable (encoder only; it needs transformers 4.46, so it is usually not:
the row then says why).

`--check-load` (tiny size) also saves each model with `save_pretrained`, loads it back through
`load_reranker` and reports the largest score difference from the in-memory reranker: the
benchmark measures the code path that serves requests.

A time guard: families (and peers) not started after `--budget-s` seconds are skipped. The exit
status is 1 when a family failed (its row says why), else 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STARTED = time.perf_counter()

FAMILIES = (
    "encoder",
    "llm",
    "layerwise",
    "lightweight",
    "qwen3-reranker-0.6b",
    "qwen3-reranker-4b",
    "qwen3-reranker-8b",
    "mxbai-rerank-base-v2",
    "mxbai-rerank-large-v2",
)
# Entries that are one size of a reranker family: the family (others are named by theirs).
FAMILY_OF = {
    "qwen3-reranker-0.6b": "qwen3-reranker",
    "qwen3-reranker-4b": "qwen3-reranker",
    "qwen3-reranker-8b": "qwen3-reranker",
    "mxbai-rerank-base-v2": "mxbai-rerank",
    "mxbai-rerank-large-v2": "mxbai-rerank",
}
# Larger sizes, left out of a default `--size tiny` run (the same tiny model as the smallest).
LARGER_SIZES = ("qwen3-reranker-4b", "qwen3-reranker-8b", "mxbai-rerank-large-v2")
MODELS = {
    "encoder": "bge-reranker-v2-m3 (XLM-R large)",
    "llm": "bge-reranker-v2-gemma (Gemma-2B)",
    "layerwise": "bge-reranker-v2-minicpm-layerwise (MiniCPM-2B)",
    "lightweight": "bge-reranker-v2.5-gemma2-lightweight (Gemma2-9B)",
    "qwen3-reranker-0.6b": "Qwen3-Reranker-0.6B",
    "qwen3-reranker-4b": "Qwen3-Reranker-4B",
    "qwen3-reranker-8b": "Qwen3-Reranker-8B",
    "mxbai-rerank-base-v2": "mxbai-rerank-base-v2 (Qwen2.5-0.5B)",
    "mxbai-rerank-large-v2": "mxbai-rerank-large-v2 (Qwen2.5-1.5B)",
}


def family_of(entry: str) -> str:
    return FAMILY_OF.get(entry, entry)


def qwen3_config(hidden: int, intermediate: int, layers: int, heads: int, tied: bool) -> dict:
    """A Qwen3-Reranker config.json: 8 key/value heads of 128, 40960 positions, 151669 tokens."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": 151669,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "hidden_act": "silu",
        "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000,
        "attention_bias": False,
        "pad_token_id": 151643,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "tie_word_embeddings": tied,
    }


def qwen2_config(hidden: int, intermediate: int, layers: int, heads: int) -> dict:
    """An mxbai-rerank-v2 config.json: Qwen2.5's, 2 key/value heads, 32768 positions, 151936
    tokens, tied embeddings."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "use_sliding_window": False,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "tie_word_embeddings": True,
    }


# The published checkpoints' config.json values that set the cost of a forward pass.
REAL_CONFIGS: dict[str, dict[str, Any]] = {
    "encoder": {
        "architectures": ["XLMRobertaForSequenceClassification"],
        "model_type": "xlm-roberta",
        "vocab_size": 250002,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "hidden_act": "gelu",
        "max_position_embeddings": 8194,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "num_labels": 1,
    },
    "llm": {
        "architectures": ["GemmaForCausalLM"],
        "model_type": "gemma",
        "vocab_size": 256000,
        "hidden_size": 2048,
        "intermediate_size": 16384,
        "num_hidden_layers": 18,
        "num_attention_heads": 8,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
        "tie_word_embeddings": True,
    },
    "layerwise": {
        "architectures": ["LayerWiseMiniCPMForCausalLM"],
        "model_type": "minicpm",
        "vocab_size": 122753,
        "hidden_size": 2304,
        "intermediate_size": 5760,
        "num_hidden_layers": 40,
        "num_attention_heads": 36,
        "num_key_value_heads": 36,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "scale_emb": 12,
        "scale_depth": 1.4,
        "dim_model_base": 256,
        "start_layer": 8,
        "head_multi": True,
        "head_type": "simple",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
    },
    "lightweight": {
        "architectures": ["CostWiseGemmaForCausalLM"],
        "model_type": "cost_wise_gemma",
        "vocab_size": 256000,
        "hidden_size": 3584,
        "intermediate_size": 14336,
        "num_hidden_layers": 42,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 256,
        "query_pre_attn_scalar": 256,
        "sliding_window": 4096,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
        "start_layer": 8,
        "layer_sep": 1,
        "layer_wise": True,
    },
    "qwen3-reranker-0.6b": qwen3_config(1024, 3072, 28, 16, tied=True),
    "qwen3-reranker-4b": qwen3_config(2560, 9728, 36, 32, tied=True),
    "qwen3-reranker-8b": qwen3_config(4096, 12288, 36, 32, tied=False),
    "mxbai-rerank-base-v2": qwen2_config(896, 4864, 24, 14),
    "mxbai-rerank-large-v2": qwen2_config(1536, 8960, 28, 12),
}

WORDS = ["panda", "bear", "bamboo", "china", "mountain", "forest", "river", "capital", "france", "paris", "population", "billion", "people", "reranker", "query", "passage", "score", "relevance", "search", "index", "document", "chunk", "embedding", "vector", "model", "the", "a", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with", "as", "by", "at", "from", "this", "are", "was", "be", "or", "an", "which", "can", "熊猫", "竹子", "中国", "巴黎", "法国", "人口", "重排序", "检索", "文档", "段落", "查询", "分数", "模型", "北京", "上海"]


# -- pairs ----------------------------------------------------------------------------------------


def make_jobs(backend: Any, args: argparse.Namespace, count: int, seed: int) -> list[dict]:
    """`count` queries, each with `args.passages` passages whose lengths (in this tokenizer's
    tokens) are drawn from min..max tokens; the same seed gives every family the same draws."""
    rng = random.Random(seed)

    def text(tokens: int) -> str:
        words = " ".join(rng.choice(WORDS) for _ in range(tokens + 8))  # >= 1 token per word
        encoding = backend.encode(words, add_special_tokens=False)
        if len(encoding.ids) <= tokens:
            return words
        return words[: encoding.offsets[tokens - 1][1]]

    jobs = []
    for _ in range(count):
        lengths = [rng.randint(args.min_tokens, args.max_tokens) for _ in range(args.passages)]
        jobs.append({"query": text(12), "passages": [text(length) for length in lengths]})
    return jobs


# -- models ---------------------------------------------------------------------------------------


def tokenizer_folder(family: str, folder: Path) -> Path:
    """The tests' tiny checkpoint (tokenizer files, config.json, for most a tiny model)."""
    path = folder / f"tiny-{family}"
    if family_of(family) == "qwen3-reranker":
        from search_service.testing.tiny_qwen import make_tiny_qwen3_reranker

        return make_tiny_qwen3_reranker(path)
    if family_of(family) == "mxbai-rerank":
        from search_service.testing.tiny_qwen import make_tiny_qwen2_reranker

        return make_tiny_qwen2_reranker(path)
    if family == "encoder":
        from search_service.testing.tiny_encoder import make_tiny_encoder_reranker

        return make_tiny_encoder_reranker(path)
    if family == "llm":
        from search_service.testing.tiny_llm import make_tiny_llm_reranker

        return make_tiny_llm_reranker(path)
    if family == "layerwise":
        from search_service.testing.tiny_layerwise import write_tokenizer

        write_tokenizer(path)  # the tiny model itself needs the FlagEmbedding env: not written
        return path
    from search_service.testing.tiny_lightweight import make_local_lightweight_reranker

    return make_local_lightweight_reranker(path)


def config_values(family: str, size: str, tokenizer_dir: Path) -> dict[str, Any]:
    if size == "real":
        return dict(REAL_CONFIGS[family])
    if family == "layerwise":
        from search_service.testing.tiny_layerwise import TINY_CONFIG

        tokenizer = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = len(tokenizer["model"]["vocab"])
        return {
            **TINY_CONFIG,
            "architectures": ["LayerWiseMiniCPMForCausalLM"],
            "model_type": "minicpm",
            "vocab_size": vocab,
        }
    values = json.loads((tokenizer_dir / "config.json").read_text(encoding="utf-8"))
    for key in ("dtype", "torch_dtype", "transformers_version"):
        values.pop(key, None)
    return values


def model_recipe(family: str, values: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """(model class, config, `_from_config` options), parsed and set up as the family's `load`
    does (layerwise: our MiniCPM config; lightweight: attention softcapping cleared, SDPA)."""
    options: dict[str, Any] = {}
    if family == "encoder":
        from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

        return XLMRobertaForSequenceClassification, XLMRobertaConfig.from_dict(values), options
    if family == "llm":
        from transformers import GemmaConfig, GemmaForCausalLM

        return GemmaForCausalLM, GemmaConfig.from_dict(values), options
    if family_of(family) == "qwen3-reranker":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        return Qwen3ForCausalLM, Qwen3Config.from_dict(values), options
    if family_of(family) == "mxbai-rerank":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        return Qwen2ForCausalLM, Qwen2Config.from_dict(values), options
    if family == "layerwise":
        from search_service.rerankers.families.minicpm_layerwise import (
            LayerwiseMiniCPMConfig,
            LayerwiseMiniCPMForScoring,
        )

        return LayerwiseMiniCPMForScoring, LayerwiseMiniCPMConfig.from_checkpoint(values), options
    from search_service.rerankers.families.gemma2_lightweight import (
        LightweightGemma2Config,
        LightweightGemma2ForScoring,
        attention_implementation,
    )

    config = LightweightGemma2Config.from_dict(values)
    config.attn_logit_softcapping = None  # as load_lightweight_gemma2's default
    options["attn_implementation"] = attention_implementation(False)
    return LightweightGemma2ForScoring, config, options


def build_model(family: str, values: dict[str, Any], device: str, dtype: Any) -> Any:
    """The family's model on `device` in `dtype`, random weights, eval mode."""
    cls, config, options = model_recipe(family, values)
    return instantiate(cls, config, options, device, dtype)


def instantiate(cls: Any, config: Any, options: dict[str, Any], device: str, dtype: Any) -> Any:
    import torch

    with torch.device(device):
        model = cls._from_config(config, dtype=dtype, **options)
    return model.eval()


def load_tokenizer(family: str, tokenizer_dir: Path) -> Any:
    """The tokenizer class the family's `load` uses."""
    if family_of(family) in ("encoder", "llm", "qwen3-reranker", "mxbai-rerank"):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(tokenizer_dir))
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))


def family_dtype(family: str, requested: str, device: str) -> Any:
    """What `load_reranker(dtype=requested)` gives this family on `device`."""
    from search_service.devices import resolve_dtype
    from search_service.rerankers.registry import family_class

    if requested == "auto":
        # The family's own `auto` (lightweight, qwen3-reranker, mxbai-rerank: bfloat16 on a GPU
        # that has it).
        requested = family_class(family_of(family)).default_dtype(device) or requested
    return resolve_dtype(requested, device)


def wrap(family: str, model: Any, tokenizer: Any, args: argparse.Namespace, device: str) -> Any:
    from search_service.rerankers.registry import family_class

    return family_class(family_of(family))(
        model=model,
        tokenizer=tokenizer,
        name=f"random-{args.size}-{family}",
        device=device,
        dtype=model.dtype,
        max_length=args.max_length,
        batch_size=args.batch_size,
    )


# -- timing ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)  # nearest rank
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def time_engine(score, jobs: list[dict], warmup: list[dict], sync) -> dict[str, Any]:
    for job in warmup:
        score(job["query"], job["passages"])
    times, scores = [], []
    for job in jobs:
        sync()
        start = time.perf_counter()
        result = score(job["query"], job["passages"])
        sync()
        times.append(time.perf_counter() - start)
        scores.append([float(value) for value in result])
    pairs = sum(len(job["passages"]) for job in jobs)
    flat = [value for row in scores for value in row]
    return {
        "pairs": pairs,
        "pairs_per_s": pairs / sum(times),
        "p50_ms": percentile(times, 50) * 1000,
        "p95_ms": percentile(times, 95) * 1000,
        "times_s": times,
        "scores": scores,
        "non_finite": sum(1 for value in flat if not math.isfinite(value)),
    }


def max_abs_diff(left: list[list[float]], right: list[list[float]]) -> float:
    pairs = zip(
        (value for row in left for value in row),
        (value for row in right for value in row),
        strict=True,
    )
    return max((abs(a - b) for a, b in pairs), default=0.0)


class Cuda:
    """Peak-memory bookkeeping and synchronisation, no-ops off CUDA."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.on = device.startswith("cuda")

    def sync(self) -> None:
        if self.on:
            self.torch.cuda.synchronize()

    def reset(self) -> None:
        gc.collect()
        if self.on:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 1024**2 if self.on else None


# -- one family -----------------------------------------------------------------------------------


def run_family(family: str, args, device: str, folder: Path, cuda: Cuda) -> tuple[dict, list]:
    """The family's row, and the peer rows (encoder only)."""
    dtype = family_dtype(family, args.dtype, device)
    row: dict[str, Any] = {
        "family": family,
        "model": MODELS[family] if args.size == "real" else f"tiny ({family}, tests' config)",
        "dtype": str(dtype).removeprefix("torch."),
        "batch_size": args.batch_size,
    }
    tokenizer_dir = tokenizer_folder(family, folder)
    values = config_values(family, args.size, tokenizer_dir)
    recipe = model_recipe(family, values)  # imports the model code: not part of the build time
    cuda.reset()
    started = time.perf_counter()
    model = instantiate(*recipe, device, dtype)
    cuda.sync()
    row["build_s"] = time.perf_counter() - started
    row["params_m"] = sum(param.numel() for param in model.parameters()) / 1e6
    row["layers"] = model.config.num_hidden_layers
    row["hidden"] = model.config.hidden_size
    row["attention"] = getattr(model.config, "_attn_implementation", None)
    tokenizer = load_tokenizer(family, tokenizer_dir)
    reranker = wrap(family, model, tokenizer, args, device)
    row["max_batch_tokens"] = getattr(reranker, "max_batch_tokens", None)
    backend = tokenizer.backend_tokenizer
    jobs = make_jobs(backend, args, args.queries, args.seed)
    # On a GPU, one untimed pass over the timed queries: the first use of each batch shape loads
    # kernels and picks GEMM algorithms (tens to hundreds of ms per query), which a server pays
    # once at start. In-process peers run after ours, so a short warm-up would favour them.
    warmup = jobs if cuda.on else make_jobs(backend, args, 1, args.seed + 1)
    tokenize_times, lengths = [], []
    for job in jobs:
        start = time.perf_counter()
        features = reranker.tokenize([(job["query"], p) for p in job["passages"]], args.max_length)
        tokenize_times.append(time.perf_counter() - start)
        lengths.extend(len(feature) for feature in features)
    row["tokenize_ms"] = 1000 * sum(tokenize_times) / len(tokenize_times)
    row["tokens_per_pair"] = sum(lengths) / len(lengths)
    row.update(time_engine(reranker.score, jobs, warmup, cuda.sync))
    row["peak_cuda_mib"] = cuda.peak_mib()
    if args.check_load:
        row["load_max_abs_diff"] = check_load(reranker, model, tokenizer_dir, jobs[0], args, folder)
    peers = []
    if family_of(family) in PEER_FAMILIES:
        peers = run_peers(family, model, tokenizer_dir, jobs, warmup, row, args, device, cuda)
    del reranker, model, tokenizer
    cuda.reset()
    return row, peers


def check_load(reranker, model, tokenizer_dir: Path, job: dict, args, folder: Path) -> float:
    """Save the in-memory model as a checkpoint, load it with `load_reranker`, compare scores."""
    from search_service.rerankers import load_reranker

    # One folder per entry (sizes of one family too), named so that qwen3-reranker and
    # mxbai-rerank are chosen by name as their hub ids are.
    target = folder / f"saved-{reranker.name}"
    target.mkdir()
    for source in tokenizer_dir.iterdir():
        if source.is_file() and (
            source.name.startswith("tokenizer") or source.name == "special_tokens_map.json"
        ):
            shutil.copy(source, target / source.name)
    model.save_pretrained(str(target))
    loaded = load_reranker(
        str(target),
        device=reranker.device,
        dtype=reranker.dtype,
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    if type(loaded) is not type(reranker):
        raise RuntimeError(f"load_reranker gave {type(loaded).__name__}, not the family's class")
    ours = reranker.score(job["query"], job["passages"])
    theirs = loaded.score(job["query"], job["passages"])
    del loaded
    return max_abs_diff([ours], [theirs])


# -- peers (encoder family) -----------------------------------------------------------------------


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


# The families with in-process peers (see the module docstring).
PEER_FAMILIES = ("encoder", "qwen3-reranker")


def run_peers(
    family, model, tokenizer_dir, jobs, warmup, ours: dict, args, device, cuda
) -> list[dict]:
    engines = [] if args.no_st else ["sentence-transformers"]
    if args.flag and family == "encoder":
        engines.append("FlagEmbedding")
    rows = []
    for engine in engines:
        row: dict[str, Any] = {"engine": engine, "family": family, "dtype": ours["dtype"]}
        rows.append(row)
        if elapsed() > args.budget_s:
            row["status"] = f"skipped: over the {args.budget_s:.0f} s budget"
            continue
        try:
            if engine == "sentence-transformers":
                score = crossencoder(family, model, tokenizer_dir, args, device)
            else:
                score = flag_reranker(model, tokenizer_dir, args, device, ours["dtype"])
            row["version"] = _version(engine)
            cuda.reset()
            row.update(time_engine(score, jobs, warmup, cuda.sync))
            row["peak_cuda_mib"] = cuda.peak_mib()
            row["max_abs_diff_vs_ours"] = max_abs_diff(row["scores"], ours["scores"])
            row["ours_speedup"] = ours["pairs_per_s"] / row["pairs_per_s"]
            row["status"] = "ok"
        except ImportError as error:
            row["status"] = f"not run: {engine} is not importable ({error})"
        except Exception as error:  # noqa: BLE001 - a peer's failure must not stop the run
            traceback.print_exc()
            row["status"] = f"error: {type(error).__name__}: {str(error)[:300]}"
    return rows


def crossencoder(family: str, model, tokenizer_dir: Path, args, device: str):
    """sentence-transformers' CrossEncoder around OUR in-memory model (same weights, dtype)."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import PreTrainedModel

    options: dict[str, Any] = {}
    if family_of(family) == "qwen3-reranker":  # a causal LM: LogitScore(yes, no) on a template
        from search_service.rerankers.families.qwen3 import CHAT_TEMPLATE

        options["processor_kwargs"] = {"chat_template": CHAT_TEMPLATE}
    # Built from the tiny checkpoint (same architecture and tokenizer), then its model swapped.
    engine = CrossEncoder(
        str(tokenizer_dir), device=device, max_length=args.max_length, **options
    )
    # The outermost transformers model(s): not those inside another one (XLM-R's `roberta`).
    slots = [
        (module, name)
        for module in engine.modules()
        if not isinstance(module, PreTrainedModel)
        for name, child in module.named_children()
        if isinstance(child, PreTrainedModel)
    ]
    if len(slots) != 1:
        raise RuntimeError(f"expected one transformers model in CrossEncoder, found {len(slots)}")
    setattr(*slots[0], model)
    identity = torch.nn.Identity()  # raw logits, as ours

    def score(query, passages):
        return engine.predict(
            [(query, passage) for passage in passages],
            batch_size=args.batch_size,
            activation_fn=identity,
            show_progress_bar=False,
        )

    return score


def flag_reranker(model, tokenizer_dir: Path, args, device: str, dtype: str):
    """FlagEmbedding's FlagReranker around OUR in-memory model (needs transformers 4.46)."""
    from FlagEmbedding import FlagReranker

    if dtype == "bfloat16":
        raise RuntimeError("FlagReranker has no bfloat16 mode (use_fp16 only)")
    engine = FlagReranker(
        str(tokenizer_dir),
        use_fp16=dtype == "float16",
        devices=[device],
        batch_size=args.batch_size,
        max_length=args.max_length,
    )
    engine.model = model

    def score(query, passages):
        scores = engine.compute_score([[query, passage] for passage in passages])
        return scores if isinstance(scores, list) else [scores]

    return score


# -- report ---------------------------------------------------------------------------------------


def elapsed() -> float:
    return time.perf_counter() - STARTED


def machine(device: str) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": _version("sentence-transformers"),
        "cpus": os.cpu_count(),
        "device": device,
    }
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(device)
        info["gpu"] = properties.name
        info["gpu_mib"] = properties.total_memory // 1024**2
        info["cuda"] = torch.version.cuda
    return info


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def params(millions: float | None) -> str:
    if millions is None:
        return "-"
    return f"{millions:.0f}" if millions >= 10 else f"{millions:.2f}"


def warmup_words(args: dict) -> str:
    return (
        "an untimed pass over the same queries"
        if str(args["device"]).startswith("cuda")
        else "1 warm-up query"
    )


def print_report(report: dict) -> None:
    info = report["machine"]
    args = report["args"]
    described = ", ".join(f"{key} {value}" for key, value in info.items())
    print(f"machine: {described}")
    print(
        f"pairs: {args['queries']} queries x {args['passages']} passages of "
        f"{args['min_tokens']}-{args['max_tokens']} tokens, max_length {args['max_length']}, "
        f"after {warmup_words(args)}; size {args['size']}, random weights"
    )
    header = (
        "| family | model | params M | dtype | batch | build s | pairs/s | p50 ms/query "
        "| p95 ms/query | tokenize ms/query | tokens/pair | peak CUDA MiB | status |"
    )
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for row in report["families"]:
        print(
            f"| {row['family']} | {row.get('model', '-')} | {params(row.get('params_m'))} "
            f"| {row.get('dtype', '-')} | {fmt(row.get('batch_size'))} | {fmt(row.get('build_s'))} "
            f"| {fmt(row.get('pairs_per_s'))} | {fmt(row.get('p50_ms'), 0)} "
            f"| {fmt(row.get('p95_ms'), 0)} | {fmt(row.get('tokenize_ms'))} "
            f"| {fmt(row.get('tokens_per_pair'), 0)} | {fmt(row.get('peak_cuda_mib'), 0)} "
            f"| {row['status']} |"
        )
    if report["peers"]:
        print()
        header = (
            "| engine | family | pairs/s | p50 ms/query | p95 ms/query | peak CUDA MiB "
            "| max abs diff vs ours | ours x faster | status |"
        )
        print(header)
        print("|" + "---|" * header.count(" | ") + "---|")
        ours = {row["family"]: row for row in report["families"]}
        for row in report["peers"]:
            mine = ours[row["family"]]
            if row is next(peer for peer in report["peers"] if peer["family"] == row["family"]):
                print(
                    f"| search-service (ours) | {row['family']} | {fmt(mine.get('pairs_per_s'))} "
                    f"| {fmt(mine.get('p50_ms'), 0)} | {fmt(mine.get('p95_ms'), 0)} "
                    f"| {fmt(mine.get('peak_cuda_mib'), 0)} | 0 | 1.00 | {mine['status']} |"
                )
            diff = row.get("max_abs_diff_vs_ours")
            print(
                f"| {row['engine']} {row.get('version', '')} | {row['family']} "
                f"| {fmt(row.get('pairs_per_s'))} "
                f"| {fmt(row.get('p50_ms'), 0)} | {fmt(row.get('p95_ms'), 0)} "
                f"| {fmt(row.get('peak_cuda_mib'), 0)} "
                f"| {'-' if diff is None else f'{diff:.2e}'} "
                f"| {fmt(row.get('ours_speedup'), 2)} | {row['status']} |"
            )
    checks = [row for row in report["families"] if "load_max_abs_diff" in row]
    if checks:
        print()
        for row in checks:
            print(
                f"load check, {row['family']}: in-memory vs load_reranker(saved checkpoint) "
                f"max abs diff {row['load_max_abs_diff']:.2e}"
            )
    print(f"total {report['elapsed_s']:.1f} s")


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--families",
        help=f"comma-separated, of {', '.join(FAMILIES)} (default: all; at --size tiny, not the "
        "larger sizes of a family)",
    )
    parser.add_argument("--size", choices=["real", "tiny"], default="real")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float16", "bfloat16", "float32"],
        help="auto: what load_reranker picks per family (float16 on GPU; bfloat16 for Gemma2 and "
        "mxbai-rerank)",
    )
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--passages", type=int, default=50, help="passages per query")
    parser.add_argument("--min-tokens", type=int, default=40, help="shortest passage")
    parser.add_argument("--max-tokens", type=int, default=400, help="longest passage")
    parser.add_argument("--batch-size", type=int, default=32, help="the rerankers' default: 32")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="skip what has not started by then"
    )
    parser.add_argument("--no-st", action="store_true", help="skip the CrossEncoder peer")
    parser.add_argument("--flag", action="store_true", help="also run FlagEmbedding's FlagReranker")
    parser.add_argument(
        "--check-load",
        action="store_true",
        help="compare with load_reranker on a saved copy of each model (tiny size)",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.families is None:
        tiny = args.size == "tiny"
        families = [name for name in FAMILIES if not (tiny and name in LARGER_SIZES)]
    else:
        families = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    if not 1 <= args.min_tokens <= args.max_tokens:
        parser.error("need 1 <= --min-tokens <= --max-tokens")
    if args.check_load and args.size == "real":
        parser.error("--check-load saves every model: use it with --size tiny")
    args.families = families
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from search_service.devices import resolve_device

    device = resolve_device(args.device)
    if args.size == "real" and device == "cpu":
        print("warning: real sizes on a CPU take minutes per family", file=sys.stderr)
    torch.manual_seed(args.seed)
    cuda = Cuda(device)
    report: dict[str, Any] = {
        "machine": machine(device),
        "args": {key: value for key, value in vars(args).items()},
        "families": [],
        "peers": [],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="families-") as temporary:
        folder = Path(temporary)
        for family in args.families:
            if elapsed() > args.budget_s:
                status = f"skipped: over the {args.budget_s:.0f} s budget"
                report["families"].append({"family": family, "status": status})
                continue
            print(f"[{elapsed():6.1f} s] {family}...", file=sys.stderr, flush=True)
            try:
                row, peers = run_family(family, args, device, folder, cuda)
            except Exception as error:  # noqa: BLE001 - report it, go on with the next family
                traceback.print_exc()
                failed = True
                status = f"error: {type(error).__name__}: {str(error)[:300]}"
                report["families"].append({"family": family, "status": status})
            else:
                bad = row["non_finite"]
                row["status"] = "ok" if bad == 0 else f"{bad} non-finite scores"
                report["families"].append(row)
                report["peers"].extend(peers)
            cuda.reset()
    report["elapsed_s"] = elapsed()
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
