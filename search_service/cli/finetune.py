"""`finetune-data` and `finetune`: train a reranker on a collection's own judged queries."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from search_service.cli.base import Context, fail, load_services, main
from search_service.errors import ServiceError
from search_service.finetuning.training import LOSSES, TrainingOptions


def _command_line() -> str:
    """This command's line, from its parsed options (global options are settings: not repeated)."""
    here = click.get_current_context()
    words = ["search-service", here.info_name or ""]
    for param in here.command.params:
        value = here.params.get(param.name)
        if value in (None, False, param.default):
            continue
        flag = max(param.opts, key=len)
        words += [flag] if value is True else [flag, str(value)]
    return shlex.join(words)


@main.command("finetune-data")
@click.option("--collection", "-c", required=True, help="Indexed collection that holds the judged documents.")
@click.option("--dataset", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="BEIR folder: its queries.jsonl and qrels/SPLIT.tsv are the judgments.")
@click.option("--split", default="train", show_default=True, help="Which qrels/<split>.tsv of --dataset.")
@click.option("--queries", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="BEIR queries.jsonl (with --qrels).")
@click.option("--qrels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="BEIR qrels TSV (query-id, corpus-id, score; score > 0 is relevant).")
@click.option("--judgments", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSONL, one {"query": "...", "relevant": ["doc-id", ...]} a line (optional "id").')
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for train.jsonl, dev.jsonl and manifest.json.")
@click.option("--mode", type=click.Choice(["dense", "hybrid"]), default="dense", show_default=True,
              help="First stage that mines the hard negatives.")
@click.option("--depth", type=click.IntRange(min=1), default=30, show_default=True,
              help="First-stage chunks searched per query (hard negatives come from these).")
@click.option("--hard-negatives", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--random-negatives", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--dev-queries", type=click.IntRange(min=0), default=50, show_default=True,
              help="Judged queries held out (seeded) for the dev figures and the fusion weight.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prompt", default="", help="The lines' \"prompt\" (used by LLM rerankers; empty for encoders).")
@click.option("--skip-missing", is_flag=True, help="Drop judged ids the collection lacks instead of failing.")
@click.pass_obj
def finetune_data(ctx: Context, collection, dataset, split, queries, qrels, judgments, output, mode, depth,
                  hard_negatives, random_negatives, dev_queries, seed, prompt, skip_missing):
    """Write FlagEmbedding training lines {query, pos, neg, prompt} with mined negatives, and a dev split."""
    from search_service.finetuning.judgments import load_beir, load_jsonl
    from search_service.finetuning.mining import MiningOptions, mine

    sources = [dataset is not None, queries is not None or qrels is not None, judgments is not None]
    if sum(sources) != 1:
        fail("give the judgments one way: --dataset DIR, --queries F --qrels F, or --judgments F.jsonl")
    if sources[1] and (queries is None or qrels is None):
        fail("--queries and --qrels go together")
    if hard_negatives + random_negatives == 0:
        fail("--hard-negatives and --random-negatives are both 0: a listwise loss needs negatives")
    try:
        if dataset is not None:
            judged = load_beir(dataset / "queries.jsonl", dataset / "qrels" / f"{split}.tsv")
        elif judgments is not None:
            judged = load_jsonl(judgments)
        else:
            judged = load_beir(queries, qrels)
        services = load_services(ctx, with_rerankers=False)
        options = MiningOptions(mode=mode, depth=depth, hard_negatives=hard_negatives,
                                random_negatives=random_negatives, dev_queries=dev_queries, seed=seed,
                                prompt=prompt, skip_missing=skip_missing)
        manifest = mine(services, collection, judged, output, options)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"{manifest['train']} training queries ({manifest['pairs']} query-passage pairs), "
               f"{manifest['dev']} dev queries; {manifest['positives_missed_by_first_stage']} relevant documents "
               f"were not in the first stage's top {depth}. Wrote {output}/train.jsonl, dev.jsonl, manifest.json")


@main.command("finetune")
@click.option("--data", "data_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder from finetune-data (train.jsonl, optional dev.jsonl and manifest.json).")
@click.option("--base-model", required=True, help="Encoder checkpoint directory or hub id to start from.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the trained checkpoint (checkpoints/ holds the resumable ones).")
@click.option("--max-length", type=click.IntRange(min=16), default=128, show_default=True,
              help="Tokens per query-passage pair in training.")
@click.option("--group-size", type=click.IntRange(min=2), default=5, show_default=True,
              help="Passages per list: 1 positive + N-1 negatives.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=-1, help="Stop after N steps (overrides --epochs).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Lists per step.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=4e-5, show_default=True)
@click.option("--loss", type=click.Choice(LOSSES), default=TrainingOptions.loss,
              show_default=True, help="multiple-negatives: cross-entropy over each list with the positive as the "
              "target (FlagEmbedding's reranker loss), plus one in-batch negative; listnet, lambda: listwise "
              "losses over the same lists labelled 1/0.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--save-steps", type=click.IntRange(min=1), default=50, show_default=True,
              help="Write a resumable checkpoint every N steps.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUTPUT/checkpoints.")
@click.option("--rerank-depth", type=click.IntRange(min=1), default=20, show_default=True,
              help="Dev figures: first-stage chunks reranked per dev query.")
@click.option("--bf16", is_flag=True, help="Train in bfloat16 mixed precision (GPU).")
@click.pass_obj
def finetune(ctx: Context, data_dir, base_model, output, max_length, group_size, epochs, max_steps, batch_size,
             learning_rate, loss, seed, save_steps, resume, rerank_depth, bf16):
    """Train an encoder reranker (CrossEncoderTrainer); writes a checkpoint RAG_RERANKERS loads."""
    import json

    from search_service.finetuning import card
    from search_service.finetuning.dev import dev_figures, read_dev
    from search_service.finetuning.training import train
    from search_service.rerankers import load_reranker

    checkpoints = output / "checkpoints"
    if not resume and checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*")):
        fail(f"{output} already holds training checkpoints: pass --resume to continue, or choose another --output")
    device = ctx.settings.device
    options = TrainingOptions(base_model=base_model, max_length=max_length, group_size=group_size, epochs=epochs,
                              max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate, loss=loss,
                              seed=seed, save_steps=save_steps, device=device, bf16=bf16)
    try:
        dev_lines = read_dev(data_dir / "dev.jsonl")
        training = train(data_dir / "train.jsonl", output, options, resume=resume)
        click.echo(f"trained: {training['steps']} steps, mean loss {training['train_loss']}, {training['seconds']} s",
                   err=True)
        reranker = load_reranker(str(output), device=device)  # as RAG_RERANKERS loads it
        if reranker.family != "encoder":
            fail(f"the checkpoint in {output} loads as the {reranker.family!r} family, not 'encoder'")
        dev = dev_figures(reranker, dev_lines, rerank_depth) if dev_lines else None
    except ServiceError as exc:
        fail(exc.message)
    manifest_path = data_dir / "manifest.json"
    data = {"train_path": str(data_dir / "train.jsonl"),
            "manifest": json.loads(manifest_path.read_text()) if manifest_path.is_file() else None}
    card.write(output, options=options, training=training, data=data, dev=dev, command=_command_line())
    if dev:
        click.echo(f"dev ({dev['queries']} queries, top {rerank_depth}): first stage nDCG@10 "
                   f"{dev['first_stage_ndcg@10']:.4f}, reranked {dev['reranked_ndcg@10']:.4f}, fused "
                   f"{dev['best_fused_ndcg@10']:.4f} at dense weight {dev['best_dense_weight']}")
    click.echo(f"wrote {output} (model card: {output}/README.md)")
