"""`eval`: BEIR-format datasets through the real search path."""

from __future__ import annotations

from pathlib import Path

import click

from search_service.cli.base import Context, fail, load_services, main
from search_service.errors import ServiceError


@main.command("eval")
@click.option("--dataset", "datasets", multiple=True, required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv); repeat for several.")
@click.option("--collection", "-c", required=True,
              help="Collection to fill and search (NAME-<folder name> each, with several datasets).")
@click.option("--split", default="test", show_default=True, help="Which qrels/<split>.tsv to score.")
@click.option("--reingest", is_flag=True, help="Delete and refill a collection that holds documents.")
@click.option("--reuse", is_flag=True, help="Search a filled collection as it is, whatever its chunk sizes "
              "(a collection holding exactly the corpus, with the requested sizes, is reused anyway).")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("eval"),
              show_default=True, help="Folder for eval.json, eval.md and runs/*.trec.")
@click.option("--limit-queries", type=click.IntRange(min=1), help="Only the first N judged queries.")
@click.option("--corpus-sample", type=click.IntRange(min=1), metavar="N",
              help="Ingest N documents: every one judged for the chosen queries plus a seeded sample of "
              "the rest (much faster; the figures are then not comparable with published ones).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --corpus-sample.")
@click.option("--stages", help="Comma-separated subset of dense,sparse,hybrid,reranked,reranked-fused "
              "(default: every stage this service can run). Stages after the first are compared with "
              "it query by query (wins/losses/ties, paired bootstrap 95 % CI of the nDCG@10 difference).")
@click.option("--rerank-fusion-weight", type=click.FloatRange(0.0, 1.0), metavar="W",
              help="Dense weight of the reranked-fused stage (z-scored reranker and dense scores, "
              "per query); default RAG_RERANK_FUSION_DENSE_WEIGHT. `reranked` stays the reranker alone.")
@click.option("--chunk-tokens", type=click.IntRange(min=8), help="Chunk size of a new collection.")
@click.option("--chunk-overlap", type=click.IntRange(min=0), help="Chunk overlap of a new collection.")
@click.option("--truncate", is_flag=True, help="Cut each document to the tokens the embedder reads "
              "(max_seq_length minus special tokens), as MTEB does: one chunk per document.")
@click.option("--depth", type=click.IntRange(min=10), default=100, show_default=True,
              help="Chunks retrieved (and reranked) per query.")
@click.pass_obj
def eval_(ctx: Context, datasets, collection, split, reingest, reuse, output, limit_queries, corpus_sample,
          seed, stages, rerank_fusion_weight, chunk_tokens, chunk_overlap, truncate, depth):
    """Measure retrieval quality (nDCG@10, Recall@10/50/100, MRR@10) on BEIR datasets, per stage."""
    import shlex

    from search_service.evaluation import EvalOptions, load_dataset, run_evaluation
    from search_service.evaluation.metrics import require_pytrec_eval
    from search_service.evaluation.report import markdown, write
    from search_service.evaluation.runner import collection_names

    if reingest and reuse:
        fail("--reingest and --reuse exclude each other")
    wanted = tuple(s.strip() for s in stages.split(",") if s.strip()) if stages else None
    options = EvalOptions(reingest=reingest, reuse=reuse, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap,
                          truncate=truncate, depth=depth, limit_queries=limit_queries, stages=wanted,
                          corpus_sample=corpus_sample, seed=seed, rerank_fusion_weight=rerank_fusion_weight,
                          announce=lambda line: click.echo(line, err=True))
    here = click.get_current_context()
    words = ["search-service", "eval"]
    for param in here.command.params:  # the command line, for the report (global options are in settings)
        value = here.params.get(param.name)
        if value in (None, False, (), param.default):
            continue
        flag = param.opts[-1] if len(param.opts) == 1 else max(param.opts, key=len)
        words += [flag] if value is True else [w for v in (value if param.multiple else [value]) for w in (flag, str(v))]
    command = shlex.join(words)
    try:
        require_pytrec_eval()  # before any model loads
        loaded = [load_dataset(path, split) for path in datasets]
        names = collection_names(loaded, collection)
        reranking = wanted is None or any(name.startswith("reranked") for name in wanted)
        services = load_services(ctx, with_rerankers=reranking)
        report = run_evaluation(services, list(zip(loaded, names)), options, command=command)
    except ServiceError as exc:
        fail(exc.message)
    paths = write(report, output)
    click.echo(markdown({**report, "datasets": [{k: v for k, v in d.items() if k != "runs"}
                                                  for d in report["datasets"]]}))
    click.echo(f"wrote {paths['json']} and {paths['markdown']}", err=True)
