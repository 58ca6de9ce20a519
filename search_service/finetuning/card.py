"""The model card (`README.md`) and `finetune.json` written next to a fine-tuned checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path


def write(output: Path, *, options, training: dict, data: dict, dev: dict | None, command: str) -> None:
    settings = {k: v for k, v in asdict(options).items() if k != "progress"}
    (output / "finetune.json").write_text(
        json.dumps({"command": command, "settings": settings, "training": training, "data": data, "dev": dev},
                   indent=2) + "\n", encoding="utf-8")
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        "tags: [cross-encoder, reranker, search-service]",
        "---",
        "",
        f"# Reranker fine-tuned from `{options.base_model}`",
        "",
        "A one-label cross-encoder (`*ForSequenceClassification`), trained by `search-service finetune`",
        "with sentence-transformers' `CrossEncoderTrainer`. The service loads it as the `encoder` family:",
        "",
        "```bash",
        f"RAG_RERANKERS=finetuned={output.resolve()} search-service serve",
        "```",
        "",
        "## Data",
        "",
        (f"- Training lines: `{data.get('train_path')}` ({training['training_lines']} queries, "
        f"{training['lists']} lists, {training['pairs']} query-passage pairs)."),
    ]
    manifest = data.get("manifest") or {}
    if manifest:
        mined = manifest.get("options", {})
        lines += [
            (f"- Mined by `search-service finetune-data` from collection `{manifest.get('collection')}` "
            f"({manifest.get('documents')} documents, {manifest.get('chunks')} chunks, embedder "
            f"`{manifest.get('embedder_model')}`): hard negatives from the {mined.get('mode')} top "
            f"{mined.get('depth')} ({mined.get('hard_negatives')} per query) and "
            f"{mined.get('random_negatives')} random, seed {mined.get('seed')}; "
            f"{manifest.get('dev')} judged queries held out as the dev split."),
        ]
    lines += [
        "",
        "## Settings",
        "",
        "| setting | value |",
        "| --- | --- |",
        *[f"| {k} | `{v}` |" for k, v in settings.items()],
        "",
        (f"Training: {training['steps']} steps, mean training loss {training['train_loss']}, "
        f"{training['seconds']} s on `{training['device']}`."),
        "",
        f"Command: `{command}`",
        "",
        "## Dev split",
        "",
    ]
    if dev:
        lines += [
            (f"{dev['queries']} held-out judged queries, the first stage's top {dev['rerank_depth']} chunks "
            "reranked by this checkpoint as the service loads it, documents ranked at their best chunk."),
            "",
            "| ranking | nDCG@10 |",
            "| --- | ---: |",
            f"| first stage | {dev['first_stage_ndcg@10']:.4f} |",
            f"| reranked | {dev['reranked_ndcg@10']:.4f} |",
            f"| reranked, fused with dense weight {dev['best_dense_weight']} | {dev['best_fused_ndcg@10']:.4f} |",
            "",
            f"The dense-fusion weight that does best on the dev split is **{dev['best_dense_weight']}**: search with",
            (f'`"rerank_fusion": {{"dense_weight": {dev["best_dense_weight"]}}}` (or '
            f"`RAG_RERANK_FUSION_DENSE_WEIGHT={dev['best_dense_weight']}`). All weights are in `finetune.json`."),
        ]
    else:
        lines.append("No dev split (`dev.jsonl` was empty or missing): no figures.")
    (output / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
