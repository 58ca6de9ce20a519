#!/usr/bin/env python
"""Rerank throughput: search-service vs FlagEmbedding vs sentence-transformers, same pairs.

    .venv/bin/python benchmarks/rerank.py --size base --queries 2 --passages 50
    .venv/bin/python benchmarks/rerank.py --size large --device cuda --dtype float16 --queries 20
    .venv/bin/python benchmarks/rerank.py --checkpoint BAAI/bge-reranker-v2-m3 --device cuda --dtype float16
    .venv/bin/python benchmarks/rerank.py --size base --mixed-lengths --ours torch-fp32,torch-bf16,onnx,onnx-int8

One checkpoint, one set of pairs (`--queries` queries x `--passages` passages of about
`--passage-tokens` tokens; `--mixed-lengths` draws each passage's length from `--min-tokens` to
`--max-tokens`, 40..400), scored by three engines, each in its own process so peak memory is its own:

- `ours`: `search_service.rerankers.load_reranker(...).score(query, passages)`, once per `--ours`
  variant: torch-fp32, torch-bf16, torch-fp16 (`RAG_RERANKER_DTYPE`), onnx, onnx-int8
  (`RAG_RERANKER_RUNTIME`; exported once into $RAG_BENCH_CACHE/onnx before the timed worker
  starts, so load time and peak RSS are those of a warm cache). Default: torch with `--dtype`;
- `flag`: FlagEmbedding 1.4.2's `FlagReranker.compute_score`, run by this same file in the pinned
  reference environment (transformers 4.46, `search_service/testing/reference-requirements.lock`);
- `st`: sentence-transformers' `CrossEncoder.predict` on the same checkpoint (raw logits).

Each engine scores the first query's first 4 pairs once to warm up (on a GPU also every query once,
`--warmup-rounds`), then each query's passages in one call, timed. Reported: pairs/s over all queries, p50/p95 latency per query, load time, peak RSS of
the process (and peak CUDA memory), achieved GFLOP/s (useful FLOPs, see `rerank_cost.py` for the
formula) and its share of a float32 GEMM peak measured in the same run (on CPU), and the drift from
FlagEmbedding (from the first row without it): the largest absolute score difference and Kendall's
tau of each query's ranking (mean and min over queries; `benchmarks/drift.py`).
Below the table, issue #7's goals are checked from the rows.

Without `--checkpoint`, a checkpoint is generated once into ~/.cache/search-service/bench/: `tiny`
is the tests' tiny XLM-R reranker; `base` (XLM-R base: 12 layers, hidden 768) and `large` (XLM-R
large, the size of bge-reranker-v2-m3: 24 layers, hidden 1024, 8194 positions, 250002 tokens) have
random weights at the real size, with the tests' small tokenizer (its ids cover a few hundred of the
250002 embedding rows, which changes nothing in the cost of a forward pass).

Only the standard library is imported at module level: the reference environment runs this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("RAG_BENCH_CACHE", Path.home() / ".cache" / "search-service" / "bench"))
ENGINES = {
    "ours": "search-service",
    "flag": "FlagEmbedding FlagReranker",
    "st": "sentence-transformers CrossEncoder",
}
SIZES = {
    "tiny": None,
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 514,
    },
    "large": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "max_position_embeddings": 8194,
    },
}
WORDS = [
    "panda",
    "bear",
    "bamboo",
    "china",
    "mountain",
    "forest",
    "river",
    "capital",
    "france",
    "paris",
    "population",
    "billion",
    "people",
    "reranker",
    "query",
    "passage",
    "score",
    "relevance",
    "search",
    "index",
    "document",
    "chunk",
    "embedding",
    "vector",
    "model",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "are",
    "was",
    "be",
    "or",
    "an",
    "which",
    "can",
    "熊猫",
    "竹子",
    "中国",
    "巴黎",
    "法国",
    "人口",
    "重排序",
    "检索",
    "文档",
    "段落",
    "查询",
    "分数",
    "模型",
    "北京",
    "上海",
]
WARMUP_PAIRS = 4
# --ours variants: (RAG_RERANKER_RUNTIME, RAG_RERANKER_DTYPE)
OURS = {
    "torch-fp32": ("torch", "float32"),
    "torch-bf16": ("torch", "bfloat16"),
    "torch-fp16": ("torch", "float16"),
    "onnx": ("onnx", "float32"),
    "onnx-int8": ("onnx-int8", "float32"),
    # The same torch paths with padded batches instead of packed ones (rerankers/runtimes/packed.py).
    "torch-fp32-padded": ("torch", "float32"),
    "torch-bf16-padded": ("torch", "bfloat16"),
}
SHORT_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


# -- the parent: checkpoint, pairs, workers, table -------------------------------------------------


def make_checkpoint(size: str) -> Path:
    path = CACHE / f"xlmr-{size}-random-v1"
    if (path / ".complete").is_file():
        return path
    sys.path.insert(0, str(ROOT))
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from search_service.testing.tiny_encoder import make_tiny_encoder_reranker

    print(f"generating the {size} checkpoint in {path} (once)", file=sys.stderr)
    make_tiny_encoder_reranker(path)  # the tokenizer files (and, for tiny, the model)
    if SIZES[size] is not None:
        torch.manual_seed(0)
        config = XLMRobertaConfig(
            vocab_size=250002,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            num_labels=1,
            architectures=["XLMRobertaForSequenceClassification"],
            **SIZES[size],
        )
        model = XLMRobertaForSequenceClassification(config).eval()
        model.save_pretrained(str(path), safe_serialization=True)
    (path / ".complete").write_text(size)
    return path


def make_pairs(
    checkpoint: str,
    queries: int,
    passages: int,
    tokens: int,
    mixed: bool,
    seed: int,
    length_range: tuple[int, int] | None = None,
):
    """Random-word queries and passages; mixed lengths are drawn from `length_range` (default
    16..2x `tokens`). Returns the jobs and the mean pair length in tokens (untruncated)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    tokenizer.model_max_length = 10**9  # counting only: no "longer than the maximum" warnings
    rng = random.Random(seed)

    def text(target: int) -> str:
        """The shortest prefix of random words with at least `target` tokens (binary search)."""
        words = [rng.choice(WORDS) for _ in range(2 * target)]
        low, high = 1, len(words)
        while low < high:
            middle = (low + high) // 2
            if count(words[:middle]) >= target:
                high = middle
            else:
                low = middle + 1
        return " ".join(words[:low])

    def count(words: list[str]) -> int:
        return len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"])

    jobs = []
    for _ in range(queries):
        low, high = length_range or (16, 2 * tokens)
        lengths = [rng.randint(low, high) if mixed else tokens for _ in range(passages)]
        jobs.append({"query": text(12), "passages": [text(n) for n in lengths]})
    pair_tokens = [
        len(tokenizer(job["query"], passage, truncation=True, max_length=8192)["input_ids"])
        for job in jobs
        for passage in job["passages"]
    ]
    return jobs, sum(pair_tokens) / len(pair_tokens)


def pair_lengths(checkpoint: str, jobs: list[dict], max_length: int) -> tuple[dict, list[int]]:
    """The checkpoint's config.json and each pair's length as fed (truncated to max_length)."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    config = AutoConfig.from_pretrained(checkpoint).to_dict()
    lengths = [
        len(tokenizer(job["query"], passage, truncation=True, max_length=max_length)["input_ids"])
        for job in jobs
        for passage in job["passages"]
    ]
    return config, lengths


def run_worker(
    engine: str, job_file: Path, python: str, variant: str | None = None, prepare: bool = False
) -> dict:
    env = dict(os.environ)
    if engine == "flag":
        env.pop("PYTHONPATH", None)  # the project's packages must not leak into the reference env
    command = [python, str(Path(__file__).resolve()), "--worker", engine, "--job", str(job_file)]
    command += ["--variant", variant] if variant else []
    command += ["--prepare"] if prepare else []
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{engine} worker failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def warmup_rounds(args) -> int:
    """Untimed passes over every query before the timed ones: by default one on a GPU, where the
    first use of each batch shape loads kernels and picks GEMM algorithms (it took the first
    round on an H200 from 35 to 130 ms per query), none on a CPU."""
    if args.warmup_rounds is not None:
        return args.warmup_rounds
    return 1 if args.device.startswith("cuda") else 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)  # nearest rank
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def describe_checkpoint(args, checkpoint: str) -> str:
    if args.checkpoint:
        return args.checkpoint
    if args.size == "tiny":
        return "tiny XLM-R reranker from the tests (2 layers, hidden 32), random weights"
    layers, hidden = SIZES[args.size]["num_hidden_layers"], SIZES[args.size]["hidden_size"]
    like = "bge-reranker-v2-m3" if args.size == "large" else "bge-reranker-base"
    return f"XLM-R {args.size} ({layers} layers, hidden {hidden}, like {like}), random weights, real size"


def main_parent(args) -> int:
    checkpoint = args.checkpoint or str(make_checkpoint(args.size))
    length_range = (args.min_tokens, args.max_tokens) if args.mixed_lengths else None
    jobs, mean_tokens = make_pairs(
        checkpoint,
        args.queries,
        args.passages,
        args.passage_tokens,
        args.mixed_lengths,
        args.seed,
        length_range,
    )
    engines = [engine.strip() for engine in args.engines.split(",") if engine.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    variants = [v.strip() for v in (args.ours or f"torch-{SHORT_DTYPES[args.dtype]}").split(",")]
    unknown = set(variants) - set(OURS)
    if unknown:
        raise SystemExit(
            f"unknown --ours variants {sorted(unknown)}; choose from {', '.join(OURS)}"
        )
    payload = {
        "checkpoint": checkpoint,
        "jobs": jobs,
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "threads": args.threads,
        "rounds": args.rounds,
        "warmup_rounds": warmup_rounds(args),
        "onnx_cache_dir": str(CACHE / "onnx"),
    }
    runs = [
        (engine, variant)
        for engine in engines
        for variant in (variants if engine == "ours" else [None])
    ]
    results = {}
    probe = not args.device.startswith("cuda") and not args.no_gemm_probe
    with tempfile.TemporaryDirectory() as folder:
        job_file = Path(folder) / "job.json"
        job_file.write_text(json.dumps(payload), encoding="utf-8")
        if probe:
            print("measuring the fp32 GEMM rate (before the engines)...", file=sys.stderr)
            gemm_before = run_worker("gemm", job_file, sys.executable)
        for engine, variant in runs:
            python = sys.executable
            if engine == "flag":
                sys.path.insert(0, str(ROOT))
                from search_service.testing.reference_env import ensure_reference_env

                python = str(ensure_reference_env())
            if variant and OURS[variant][0] != "torch":
                print(
                    f"preparing the {variant} export (cached after the first run)...",
                    file=sys.stderr,
                )
                run_worker(engine, job_file, python, variant, prepare=True)
            label = f"{ENGINES[engine]} {variant}" if variant else ENGINES[engine]
            print(f"running {label}...", file=sys.stderr)
            results[label] = dict(run_worker(engine, job_file, python, variant), variant=variant)
        gemm = None
        if probe:
            from rerank_cost import combine_probes

            print("measuring the fp32 GEMM rate (after the engines)...", file=sys.stderr)
            gemm = combine_probes(gemm_before, run_worker("gemm", job_file, sys.executable))
    config, lengths = pair_lengths(checkpoint, jobs, args.max_length)
    print_table(args, checkpoint, jobs, mean_tokens, results, config, lengths, gemm)
    if args.json:
        report = {"args": vars(args), "results": results, "gemm": gemm, "pair_tokens": lengths}
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def print_table(args, checkpoint, jobs, mean_tokens, results, config, lengths, gemm) -> None:
    sys.path.insert(0, str(ROOT))
    from rerank_cost import encoder_flops, goals, padding_share

    from benchmarks.drift import score_drift

    pairs = sum(len(job["passages"]) for job in jobs) * args.rounds
    flag_label = ENGINES["flag"]
    reference_label = flag_label if flag_label in results else next(iter(results))
    reference_name = "FlagEmbedding" if reference_label == flag_label else reference_label
    flops = encoder_flops(config, lengths) * args.rounds
    lengths_text = (
        f"mixed lengths {args.min_tokens}..{args.max_tokens} tokens/passage"
        if args.mixed_lengths
        else f"~{args.passage_tokens} tokens/passage"
    )
    print(f"checkpoint: {describe_checkpoint(args, checkpoint)}")
    print(
        f"pairs: {len(jobs)} queries x {args.passages} passages x {args.rounds} timed round(s) "
        f"after {warmup_rounds(args)} untimed "
        f"= {pairs} pairs, {lengths_text}, mean {mean_tokens:.0f} tokens/pair "
        f"({sum(lengths) / len(lengths):.0f} as fed), max_length {args.max_length}, "
        f"batch {args.batch_size}, {args.device}, peers in {args.dtype}"
    )
    print(f"machine: {machine()}")
    per_query, start = [], 0
    for job in jobs:
        per_query.append(lengths[start : start + len(job["passages"])])
        start += len(job["passages"])
    print(
        f"padding: {100 * padding_share(per_query, args.batch_size):.0f} % of the tokens in "
        f"batches of {args.batch_size} (longest first, the peers' batches), not counted in GFLOP/s;"
        " ours on a CPU packs each batch into one unpadded row (torch) or cuts batches by padded "
        "tokens (onnx)"
    )
    if gemm:
        medians = " / ".join(f"{value:.1f}" for value in gemm["medians"])
        print(
            f"fp32 GEMM rate: {gemm['gflops']:.1f} GFLOP/s sustained (median of {gemm['size']}^2 "
            f"matmuls, {gemm['threads']} threads; before / after the engines: {medians}), best "
            f"single matmul {gemm['best']:.1f}; '% of fp32 GEMM' is of the sustained rate"
        )
    header = (
        f"| engine | pairs/s | p50 ms/query | p95 ms/query | load s | peak RSS MiB "
        f"| peak CUDA MiB | GFLOP/s | % of fp32 GEMM | max abs diff vs {reference_name} "
        f"| tau mean | tau min |"
    )
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    rows = {}
    for label, result in results.items():
        times = result["times"]
        drift = score_drift(results[reference_label]["scores"], result["scores"])
        gflops = flops / sum(times) / 1e9
        share = f"{100 * gflops / gemm['gflops']:.0f}" if gemm else "-"
        cuda = f"{result['peak_cuda_mib']:.0f}" if result.get("peak_cuda_mib") else "-"
        print(
            f"| {label} ({result['version']}) | {pairs / sum(times):.1f} "
            f"| {percentile(times, 50) * 1000:.0f} | {percentile(times, 95) * 1000:.0f} "
            f"| {result['load_s']:.1f} | {result['peak_rss_mib']:.0f} | {cuda} | {gflops:.1f} "
            f"| {share} | {drift.max_abs_diff:.2e} | {drift.tau_mean:.4f} | {drift.tau_min:.4f} |"
        )
        rows[label] = {
            "label": label,
            "engine": result["engine"],
            "variant": result["variant"],
            "pairs_s": pairs / sum(times),
            "gflops": gflops,
        }
    for line in goals(rows, gemm):
        print(f"- {line}")


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


# -- the workers: one engine each, in its own process ---------------------------------------------


def load_engine(engine: str, job: dict, variant: str | None = None):
    """A `score(query, passages) -> list[float]` function, and the engine's version."""
    import torch

    device, dtype = job["device"], job["dtype"]
    half = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    if engine == "ours":
        sys.path.insert(0, str(ROOT))
        from search_service.rerankers import load_reranker

        runtime, dtype = OURS[variant] if variant else ("torch", dtype)
        reranker = load_reranker(
            job["checkpoint"],
            device=device,
            dtype=dtype,
            batch_size=job["batch_size"],
            max_length=job["max_length"],
            runtime=runtime,
            onnx_cache_dir=job.get("onnx_cache_dir"),
        )
        if variant and variant.endswith("-padded"):
            reranker.packed = False
        import search_service

        version = getattr(search_service, "__version__", None) or _version("search-service")
        return reranker.score, version
    if engine == "flag":
        from FlagEmbedding import FlagReranker

        if dtype == "bfloat16":
            raise SystemExit("FlagReranker has no bfloat16 mode (use_fp16 only)")
        reranker = FlagReranker(
            job["checkpoint"],
            use_fp16=dtype == "float16",
            devices=[device],
            batch_size=job["batch_size"],
            max_length=job["max_length"],
        )

        def score(query, passages):
            scores = reranker.compute_score([[query, passage] for passage in passages])
            return [float(s) for s in (scores if isinstance(scores, list) else [scores])]

        return score, _version("FlagEmbedding")
    if engine == "st":
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(job["checkpoint"], device=device, max_length=job["max_length"])
        if half is not None:
            model.to(half)
        identity = torch.nn.Identity()

        def score(query, passages):
            scores = model.predict(
                [(query, passage) for passage in passages],
                batch_size=job["batch_size"],
                activation_fn=identity,
                show_progress_bar=False,
            )
            return [float(s) for s in scores]

        return score, _version("sentence-transformers")
    raise SystemExit(f"unknown engine {engine!r}")


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def peak_rss_mib() -> float:
    """This process's peak RSS. On Linux VmHWM, not ru_maxrss: ru_maxrss survives fork and exec,
    so a worker would report at least the parent's RSS at the time it was started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024**2 if sys.platform == "darwin" else rss / 1024  # bytes vs KiB


def main_worker(engine: str, job_file: str, variant: str | None, prepare: bool) -> int:
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    import torch

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    if engine == "gemm":
        from rerank_cost import gemm_probe

        print(json.dumps(gemm_probe()))
        return 0
    cuda = job["device"].startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    started = time.perf_counter()
    score, version = load_engine(engine, job, variant)
    if prepare:  # the ONNX export only, so the timed worker starts from a warm cache
        print(json.dumps({}))
        return 0
    sync()
    load_s = time.perf_counter() - started
    first = job["jobs"][0]
    score(first["query"], first["passages"][:WARMUP_PAIRS])
    for _ in range(job.get("warmup_rounds", 0)):
        for query_job in job["jobs"]:
            score(query_job["query"], query_job["passages"])
    scores, times = [], []
    for round_ in range(job.get("rounds", 1)):
        for query_job in job["jobs"]:
            sync()
            start = time.perf_counter()
            result = score(query_job["query"], query_job["passages"])
            sync()
            times.append(time.perf_counter() - start)
            if round_ == 0:
                scores.append(result)
    rss_mib = peak_rss_mib()
    result = {
        "engine": engine,
        "version": version,
        "scores": scores,
        "times": times,
        "load_s": load_s,
        "peak_rss_mib": rss_mib,
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 1024**2 if cuda else None,
    }
    print(json.dumps(result))
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size",
        choices=SIZES,
        default="base",
        help="generated random-weight checkpoint (default base)",
    )
    parser.add_argument("--checkpoint", help="a local directory or hub id instead of --size")
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--passages", type=int, default=50, help="passages per query")
    parser.add_argument("--passage-tokens", type=int, default=256)
    parser.add_argument(
        "--mixed-lengths",
        action="store_true",
        help="passage lengths drawn from --min-tokens..--max-tokens",
    )
    parser.add_argument("--min-tokens", type=int, default=40, help="with --mixed-lengths")
    parser.add_argument("--max-tokens", type=int, default=400, help="with --mixed-lengths")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=32, help="the same for every engine")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument(
        "--threads", type=int, help="torch threads in every engine (default: torch's)"
    )
    parser.add_argument("--engines", default="ours,flag,st", help="comma-separated: ours, flag, st")
    parser.add_argument(
        "--ours",
        help=f"comma-separated variants of ours, one row each: {', '.join(OURS)} "
        "(default: torch in --dtype)",
    )
    parser.add_argument(
        "--no-gemm-probe", action="store_true", help="skip the fp32 matmul peak measurement"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1, help="score every query this many times")
    parser.add_argument(
        "--warmup-rounds",
        type=int,
        help="untimed passes over every query first (default: 1 on a GPU, 0 on a CPU)",
    )
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        sys.exit(main_worker(arguments.worker, arguments.job, arguments.variant, arguments.prepare))
    sys.exit(main_parent(arguments))
