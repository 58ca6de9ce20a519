"""Train an encoder reranker with sentence-transformers' `CrossEncoderTrainer`.

Each training line (`{"query", "pos", "neg"}`) gives one list per positive: the positive and
`group_size - 1` of the line's negatives (a seeded draw when it has more). The default loss,
`multiple-negatives`, is the one FlagEmbedding trains its rerankers with: cross-entropy of the
raw logits over the list with the positive as the target (sentence-transformers'
`MultipleNegativesRankingLoss`, which also adds one in-batch negative: another list's passage).
`listnet` (`ListNetLoss`) and `lambda` (`LambdaLoss`) take the same lists labelled 1 and 0;
ListNet's target is the softmax of those labels (0.40 on the positive of a list of 5), a much
weaker signal. The base model is any encoder
checkpoint (a directory or hub id): a sentence-transformers bi-encoder such as all-MiniLM-L6-v2
gets a fresh one-label classification head. Checkpoints go to `<output>/checkpoints`, so
`resume` continues from the last one; the final model is written to `<output>` as a one-label
`*ForSequenceClassification` checkpoint, which the service loads as the `encoder` family.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from search_service.errors import InvalidRequestError

LOSSES = ("multiple-negatives", "listnet", "lambda")
IN_BATCH_NEGATIVES = 1  # sentence-transformers needs at least 1 for multiple-negatives


@dataclass(frozen=True)
class TrainingOptions:
    base_model: str
    max_length: int = 128
    group_size: int = 5  # 1 positive + group_size - 1 negatives per list
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8  # lists per step
    learning_rate: float = 4e-5
    warmup_ratio: float = 0.1
    loss: str = "multiple-negatives"
    seed: int = 0
    save_steps: int = 50
    device: str = "auto"  # cpu, cuda, cuda:N, auto
    bf16: bool = False
    progress: bool = True


def read_lines(path: Path) -> list[dict]:
    """FlagEmbedding training lines, checked: a clear error names the line that is wrong."""
    if not path.is_file():
        raise InvalidRequestError(f"{path} is missing (run search-service finetune-data first)",
                                  code="invalid_training_data")
    lines = []
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as exc:
                raise InvalidRequestError(f"{path}:{number}: not JSON ({exc})", code="invalid_training_data") from None
            if not isinstance(row, dict) or not isinstance(row.get("query"), str):
                raise InvalidRequestError(f'{path}:{number}: expected {{"query": str, "pos": [str], "neg": [str]}}',
                                          code="invalid_training_data")
            for key in ("pos", "neg"):
                value = row.get(key)
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise InvalidRequestError(f'{path}:{number}: "{key}" must be a list of strings',
                                              code="invalid_training_data")
            if not row["pos"]:
                raise InvalidRequestError(f'{path}:{number}: "pos" is empty', code="invalid_training_data")
            if not row["neg"]:
                raise InvalidRequestError(f'{path}:{number}: "neg" is empty: a listwise loss needs negatives',
                                          code="invalid_training_data")
            lines.append(row)
    if not lines:
        raise InvalidRequestError(f"{path} holds no training lines", code="invalid_training_data")
    return lines


def listwise_rows(lines: list[dict], group_size: int, seed: int) -> dict[str, list]:
    """Columns `query`, `docs`, `labels`: one list per positive, negatives drawn with `seed`."""
    rng = random.Random(seed)
    queries, docs, labels = [], [], []
    for line in lines:
        for positive in line["pos"]:
            negatives = line["neg"]
            if len(negatives) > group_size - 1:
                negatives = rng.sample(negatives, group_size - 1)
            queries.append(line["query"])
            docs.append([positive, *negatives])
            labels.append([1.0] + [0.0] * len(negatives))
    return {"query": queries, "docs": docs, "labels": labels}


def column_rows(lines: list[dict], group_size: int, seed: int) -> dict[str, list]:
    """The same lists as columns `query`, `positive`, `negative_1`...: the shape
    `MultipleNegativesRankingLoss` reads. A line with fewer negatives repeats them (columns are fixed)."""
    lists = listwise_rows(lines, group_size, seed)
    columns: dict[str, list] = {"query": lists["query"], "positive": [docs[0] for docs in lists["docs"]]}
    negatives = [docs[1:] for docs in lists["docs"]]
    for index in range(group_size - 1):
        columns[f"negative_{index + 1}"] = [drawn[index % len(drawn)] for drawn in negatives]
    return columns


def train(train_path: Path, output: Path, options: TrainingOptions, *, resume: bool = False) -> dict:
    """Train, save the model in `output` (no model card: `card.write` adds it); a summary dict."""
    import torch
    from datasets import Dataset
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
        losses,
    )
    from transformers import set_seed

    if options.loss not in LOSSES:
        raise InvalidRequestError(f"loss must be one of {', '.join(LOSSES)}", code="invalid_option")
    lines = read_lines(train_path)
    multiple_negatives = options.loss == "multiple-negatives"
    rows = (column_rows if multiple_negatives else listwise_rows)(lines, options.group_size, options.seed)
    checkpoints = output / "checkpoints"
    if resume and not any(checkpoints.glob("checkpoint-*")):
        raise InvalidRequestError(f"--resume: no checkpoint in {checkpoints} to resume from",
                                  code="no_checkpoint")
    use_cpu = options.device == "cpu" or not torch.cuda.is_available()
    set_seed(options.seed)  # the new classification head's initial weights
    model = CrossEncoder(options.base_model, num_labels=1, max_length=options.max_length,
                         device="cpu" if use_cpu else (None if options.device == "auto" else options.device))
    if multiple_negatives:  # raw logits, no sigmoid or scale: FlagEmbedding's group cross-entropy
        loss = losses.MultipleNegativesRankingLoss(model, num_negatives=IN_BATCH_NEGATIVES, scale=1.0,
                                                   activation_fn=None)
    else:
        loss = losses.ListNetLoss(model) if options.loss == "listnet" else losses.LambdaLoss(model)
    arguments = CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        warmup_steps=options.warmup_ratio,  # a float below 1: a share of the steps
        seed=options.seed,
        data_seed=options.seed,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=2,
        logging_steps=max(1, options.save_steps // 5),
        report_to="none",
        use_cpu=use_cpu,
        bf16=options.bf16 and not use_cpu,
        disable_tqdm=not options.progress,
        dataloader_num_workers=0,
        # no query or passage twice in a batch: an in-batch negative is never another positive of its query
        batch_sampler=BatchSamplers.NO_DUPLICATES if multiple_negatives else BatchSamplers.BATCH_SAMPLER,
    )
    trainer = CrossEncoderTrainer(model=model, args=arguments, train_dataset=Dataset.from_dict(rows), loss=loss)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - started
    output.mkdir(parents=True, exist_ok=True)
    model.save(str(output), create_model_card=False)
    return {
        "training_lines": len(lines),
        "lists": len(rows["query"]),
        "pairs": (len(rows["query"]) * (options.group_size + IN_BATCH_NEGATIVES) if multiple_negatives
                  else sum(len(docs) for docs in rows["docs"])),  # pairs scored per epoch
        "loss": options.loss,
        "steps": result.global_step,
        "train_loss": round(float(result.training_loss), 5),
        "seconds": round(seconds, 1),
        "device": str(model.device),
        "resumed": resume,
    }
