#!/usr/bin/env python
"""The tables of docs/quality.md's fine-tuned reranker section, from a finetune_scifact.sh run.

    python scripts/finetune_scifact_table.py [WORK_DIR]     (default ../proof-scifact)

Reads WORK/ft-data/manifest.json, WORK/reranker/finetune.json and WORK/eval-{fp32,int8,bf16}/eval.json
(whichever exist) and prints markdown. Speed is not here: the eval's stage times include the first
stage and whatever else the machine runs; `benchmarks/rerank.py --checkpoint WORK/reranker --ours
torch-fp32,torch-bf16,onnx-int8` measures pairs/s of the same checkpoint on the same pairs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RUNS = (("fp32", "torch float32"), ("int8", "onnx-int8"), ("bf16", "torch bfloat16"))


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "../proof-scifact")
    manifest, model = load(work / "ft-data/manifest.json"), load(work / "reranker/finetune.json")
    if manifest:
        print(f"Training data: {manifest['train']} train queries ({manifest['pairs']} pairs mined), "
              f"{manifest['dev']} dev queries, {manifest['positives_missed_by_first_stage']} relevant "
              f"documents outside the dense top {manifest['options']['depth']}.")
    if model:
        t, dev = model["training"], model["dev"]
        print(f"Training: {t['lists']} lists, {t['pairs']} pairs, {t['steps']} steps, loss {t['train_loss']}, "
              f"{t['seconds']:.0f} s on {t['device']}.")
        if dev:
            print(f"Dev split ({dev['queries']} held-out train queries, top {dev['rerank_depth']}): dense "
                  f"{dev['first_stage_ndcg@10']:.4f}, reranked {dev['reranked_ndcg@10']:.4f}, fused "
                  f"{dev['best_fused_ndcg@10']:.4f} at dense weight {dev['best_dense_weight']}.")
    evals = {name: load(work / f"eval-{name}/eval.json") for name, _ in RUNS}
    fp32 = evals["fp32"]
    if not fp32:
        print("\n(no eval-fp32/eval.json yet)")
        return
    section = fp32["datasets"][0]
    stages = section["stages"]
    print("\n| stage (SciFact test, 300 queries) | nDCG@10 | Recall@10 | MRR@10 | vs dense: wins / losses | "
          "mean difference | paired bootstrap 95 % CI |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, stage in stages.items():
        m, p = stage["metrics"], stage.get("paired")
        versus = (f"{p['wins']} / {p['losses']} | {p['mean_difference']:+.4f} | "
                  f"[{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}]") if p else "– | – | –"
        print(f"| {name} | {m['nDCG@10']:.4f} | {m['Recall@10']:.4f} | {m['MRR@10']:.4f} | {versus} |")
    print("\n| reranker runtime | reranked nDCG@10 | vs fp32 | reranked-fused nDCG@10 | vs fp32 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = {s: stages[s]["metrics"]["nDCG@10"] for s in ("reranked", "reranked-fused") if s in stages}
    for name, label in RUNS:
        report = evals[name]
        if not report:
            print(f"| {label} | (not run) | | | |")
            continue
        run = report["datasets"][0]["stages"]
        cells = []
        for stage in ("reranked", "reranked-fused"):
            value = run.get(stage, {}).get("metrics", {}).get("nDCG@10")
            cells += [f"{value:.4f}" if value is not None else "–",
                      f"{value - base[stage]:+.4f}" if value is not None and stage in base else "–"]
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
