"""What a rerank costs in arithmetic, and how fast this machine does arithmetic: for rerank.py.

FLOPs of one encoder forward over a pair of n tokens (multiply-add = 2 FLOPs), for a model of L
layers, hidden size h and feed-forward size i:

    per layer: 2 * (4*h*h + 2*h*i) * n      the dense layers: Q, K, V, output (h x h), FFN in/out
             + 4 * h * n * n                attention: Q @ K^T and softmax @ V, each 2*h*n^2
    head:      2 * (h*h + h)                the classification head reads one token

that is 2 * params_nonembedding * n + 4 * L * h * n^2 (embedding lookups, layer norms, softmax
and biases are left out: they are not matmuls and are a small fraction). n is the pair's length as
fed (truncated to max_length); padding is not counted, so "achieved GFLOP/s" is useful work.

The GEMM probe times square float32 matmuls (torch, the same thread count as the engines), before
and after the engines run, and reports the median rate (what a sustained dense workload gets,
the yardstick) and the best single matmul (a burst, shown for reference).

Standard library at module level: the reference environment imports rerank.py, which imports this.
"""

from __future__ import annotations

import time


def encoder_flops(config: dict, pair_tokens: list[int]) -> float:
    hidden = config["hidden_size"]
    inner = config.get("intermediate_size", 4 * hidden)
    layers = config["num_hidden_layers"]
    dense = 2 * (4 * hidden * hidden + 2 * hidden * inner)
    total = 0.0
    for n in pair_tokens:
        total += layers * (dense * n + 4 * hidden * n * n) + 2 * (hidden * hidden + hidden)
    return total


def padding_share(lengths_per_query: list[list[int]], batch_size: int) -> float:
    """The share of tokens in the forward passes that are padding, when each query's pairs are
    cut longest first into batches of `batch_size` (what `Reranker.score` does without the
    scheduler); padding costs FLOPs that the achieved GFLOP/s does not count."""
    useful = padded = 0
    for lengths in lengths_per_query:
        ordered = sorted(lengths, reverse=True)
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start : start + batch_size]
            useful += sum(batch)
            padded += batch[0] * len(batch)
    return 1 - useful / padded if padded else 0.0


def gemm_probe(size: int = 2048, seconds: float = 3.0) -> dict:
    """fp32 GFLOP/s of back-to-back `size` x `size` matmuls over about `seconds` (after a warm-up):
    the median (the sustained rate a long dense workload gets on this machine) and the best
    single one (a burst: on a shared VM it can be 20-30 % above the median)."""
    import statistics

    import torch

    a = torch.randn(size, size)
    b = torch.randn(size, size)
    out = torch.empty(size, size)
    for _ in range(3):
        torch.matmul(a, b, out=out)
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    median = statistics.median(rates)
    return {
        "size": size,
        "gflops": median,
        "median": median,
        "best": max(rates),
        "runs": len(rates),
        "threads": torch.get_num_threads(),
    }


def combine_probes(before: dict, after: dict) -> dict:
    """The probes run before and after the engines; the faster one is the yardstick (the
    conservative choice: a higher rate makes the engines' share smaller)."""
    best = max((before, after), key=lambda probe: probe["median"])
    return {
        **best,
        "best": max(before["best"], after["best"]),
        "medians": [before["median"], after["median"]],
    }


def goals(rows: dict, gemm: dict | None) -> list[str]:
    """Issue #7's targets, from the table's rows ({label: {"pairs_s", "gflops", "variant"...}})."""
    lines = []
    peers = {label: row for label, row in rows.items() if row["engine"] != "ours"}
    ours = {row["variant"]: row for row in rows.values() if row["engine"] == "ours"}
    fp32 = ours.get("torch-fp32") or ours.get("onnx")
    best_fp32_ours = max(
        (row for name, row in ours.items() if name in ("torch-fp32", "onnx")),
        key=lambda row: row["pairs_s"],
        default=None,
    )
    faster_peer = max(peers.values(), key=lambda row: row["pairs_s"], default=None)
    if best_fp32_ours and faster_peer:
        lines.append(
            f"ours fp32 (best of torch-fp32/onnx: {best_fp32_ours['variant']}) vs the faster peer "
            f"({faster_peer['label']}): {best_fp32_ours['pairs_s'] / faster_peer['pairs_s']:.2f}x "
            "(goal >= 1)"
        )
        flag = next((row for row in peers.values() if row["engine"] == "flag"), None)
        if flag:
            lines.append(
                f"ours fp32 vs FlagEmbedding: {best_fp32_ours['pairs_s'] / flag['pairs_s']:.2f}x "
                "(goal >= 2)"
            )
    fast = [row for name, row in ours.items() if name in ("torch-bf16", "onnx-int8")]
    if fast and faster_peer:
        best = max(fast, key=lambda row: row["pairs_s"])
        lines.append(
            f"fast CPU path ({best['variant']}) vs the faster fp32 peer: "
            f"{best['pairs_s'] / faster_peer['pairs_s']:.2f}x (goal >= 2; drift in the table)"
        )
    if fp32 and gemm:
        lines.append(
            f"ours {fp32['variant']}: {fp32['gflops']:.1f} GFLOP/s = "
            f"{100 * fp32['gflops'] / gemm['gflops']:.0f} % of the measured sustained fp32 GEMM "
            f"rate {gemm['gflops']:.1f} ({gemm['size']}^2, {gemm['threads']} threads; goal >= 80 %)"
            f", {100 * fp32['gflops'] / gemm['best']:.0f} % of its best single matmul "
            f"{gemm['best']:.1f}"
        )
    return lines
