#!/usr/bin/env python
"""Score the published BGE rerankers' own examples and compare with the scores they publish.

For users with Hugging Face hub access (or the models in their cache); it downloads several GB:

    .venv/bin/python benchmarks/verify_published.py --device cuda                 # all, float16
    .venv/bin/python benchmarks/verify_published.py --models bge-reranker-v2-m3 --device cpu

The expected values are the ones printed in the model cards and the BGE tutorial (`../shared/seeds/`:
the bge-reranker-v2-m3 model card, FlagEmbedding's "BGE reranker" tutorial). They were computed by
FlagEmbedding with `use_fp16=True` on a GPU, so a float16 GPU run should match them to a few
hundredths; float32 (the CPU default) differs a little more. Exits 1 when a score is further from
its expected value than `--tolerance`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PANDA = [
    ("what is panda?", "hi"),
    (
        "what is panda?",
        (
            "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply "
            "panda, is a bear species endemic to China."
        ),
    ),
]
CAPITALS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What is the capital of France?", "The population of China is over 1.4 billion people."),
    ("What is the population of China?", "Paris is the capital of France."),
    ("What is the population of China?", "The population of China is over 1.4 billion people."),
]
QUERY_PASSAGE = [("query", "passage")]


@dataclass(frozen=True)
class Example:
    model: str
    pairs: list[tuple[str, str]]
    expected: list[float]
    source: str
    options: dict = field(default_factory=dict)


EXAMPLES = [
    Example(
        "BAAI/bge-reranker-v2-m3", QUERY_PASSAGE, [-5.65234375], "bge-reranker-v2-m3 model card"
    ),
    Example(
        "BAAI/bge-reranker-v2-m3", PANDA, [-8.1875, 5.26171875], "bge-reranker-v2-m3 model card"
    ),
    Example(
        "BAAI/bge-reranker-large",
        CAPITALS,
        [7.984375, -6.84375, -7.15234375, 5.44921875],
        "BGE reranker tutorial",
    ),
    Example("BAAI/bge-reranker-v2-gemma", QUERY_PASSAGE, [1.974609375], "BGE reranker tutorial"),
    Example(
        "BAAI/bge-reranker-v2-minicpm-layerwise",
        QUERY_PASSAGE,
        [-7.06640625],
        "BGE reranker tutorial",
        {"cutoff_layers": 28},
    ),
    Example(
        "BAAI/bge-reranker-v2.5-gemma2-lightweight",
        QUERY_PASSAGE,
        [14.734375],
        "BGE reranker tutorial",
        {"cutoff_layers": 28, "compress_ratio": 2, "compress_layers": [24, 40]},
    ),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", help="comma-separated names, e.g. bge-reranker-v2-m3 (default all)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--dtype", default="auto", help="auto (float16 on a GPU), float32, float16, bfloat16"
    )
    parser.add_argument(
        "--tolerance", type=float, help="allowed |score - expected| (default 0.05, 0.15 in float32)"
    )
    args = parser.parse_args(argv)

    from search_service.errors import ModelLoadError
    from search_service.rerankers import load_reranker

    wanted = {
        name.strip().split("/")[-1] for name in (args.models or "").split(",") if name.strip()
    }
    failures, checked, loaded = 0, 0, {}
    print("| model | options | pair | expected | ours | diff |")
    print("|---|---|---|---|---|---|")
    for example in EXAMPLES:
        if wanted and example.model.split("/")[-1] not in wanted:
            continue
        if example.model not in loaded:
            loaded.clear()  # one model in memory at a time
            try:
                loaded[example.model] = load_reranker(
                    example.model, device=args.device, dtype=args.dtype
                )
            except ModelLoadError as error:
                loaded[example.model] = None
                print(f"| {example.model} | not available: {error.message[:160]} | | | | |")
        reranker = loaded[example.model]
        if reranker is None:
            continue
        checked += len(example.pairs)
        tolerance = args.tolerance or (0.15 if str(reranker.dtype) == "torch.float32" else 0.05)
        scores = reranker.score_pairs(example.pairs, **example.options)
        for pair, expected, score in zip(example.pairs, example.expected, scores, strict=True):
            diff = score - expected
            failures += abs(diff) > tolerance
            flag = "" if abs(diff) <= tolerance else " FAIL"
            print(
                f"| {example.model} ({reranker.dtype}, {reranker.device}) | {example.options or ''} "
                f"| {pair[0][:30]!r}, {pair[1][:30]!r} | {expected} | {score:.5f} | {diff:+.4f}{flag} |"
            )
    if not checked:
        print("nothing verified: no model could be loaded")
        return 2
    print(
        f"{failures} of {checked} scores outside the tolerance"
        if failures
        else f"all {checked} scores within tolerance"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
