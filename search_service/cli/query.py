"""`search` (the collection's whole query path) and `rerank` (score passages, no database)."""

from __future__ import annotations

import json

import click

from search_service.cli.base import Context, fail, load_services, main
from search_service.errors import ServiceError


@main.command()
@click.argument("query")
@click.option("--collection", "-c", required=True)
@click.option("--top-k", type=int, help="Overrides RAG_TOP_K.")
@click.option("--candidates", type=int, help="Overrides RAG_CANDIDATES.")
@click.option("--no-rerank", is_flag=True, help="Dense search only.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON response.")
@click.pass_obj
def search(ctx: Context, query, collection, top_k, candidates, no_rerank, as_json):
    """Search a collection from the command line."""
    services = load_services(ctx, with_rerankers=not no_rerank)
    try:
        response = services.search.search(
            collection,
            query,
            top_k=top_k or ctx.settings.top_k,
            candidates=candidates or ctx.settings.candidates,
            rerank=False if no_rerank else None,
        )
    except ServiceError as exc:
        fail(exc.message)
    if as_json:
        click.echo(json.dumps(response, indent=2, ensure_ascii=False))
        return
    for rank, result in enumerate(response["results"], start=1):
        snippet = " ".join(result["text"].split())[:200]
        click.echo(f"{rank}. [{result['score']:.4f}] {result['document_id']} ({result['start']}-{result['end']})")
        click.echo(f"   {snippet}")


def _int_list(_ctx, param, value):
    if value is None:
        return None
    try:
        return [int(item) for item in value.split(",") if item.strip()]
    except ValueError:
        raise click.BadParameter("expected integers separated by commas", param=param) from None


@main.command()
@click.argument("query")
@click.argument("passages", nargs=-1)
@click.option("--file", "-f", "passage_file", type=click.File("r", encoding="utf-8"),
              help="Passages, one per line (blank lines skipped); '-' reads stdin.")
@click.option("--model", "-m", help="A RAG_RERANKERS name, or a hub id / local directory "
              "(default: the default reranker).")
@click.option("--family", help="Force the reranker family (encoder, llm, layerwise, lightweight, "
              "qwen3-reranker, mxbai-rerank); or add #family=<name> to --model.")
@click.option("--normalize", is_flag=True, help="Sigmoid scores in (0, 1) instead of raw logits.")
@click.option("--top-n", type=click.IntRange(min=1), help="Only the best N.")
@click.option("--prompt", help="llm, layerwise, lightweight: the instruction after the pair; "
              "qwen3-reranker: the <Instruct>; mxbai-rerank: its instruction line.")
@click.option("--cutoff-layers", callback=_int_list, help="layerwise, lightweight: the scoring layer.")
@click.option("--compress-ratio", type=int, help="lightweight: 1, 2, 4 or 8.")
@click.option("--compress-layers", callback=_int_list, help="lightweight: layers, e.g. 24,40.")
@click.option("--max-length", type=int, help="Token budget per pair (default 512; "
              "qwen3-reranker: 8192, its template included; mxbai-rerank: 8192, "
              "template excluded).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON shaped like /v1/rerank.")
@click.pass_obj
def rerank(ctx: Context, query, passages, passage_file, model, family, normalize, top_n, as_json, **options):
    """Score PASSAGES (and --file lines) against QUERY, best first; no database needed."""
    from pydantic import ValidationError

    from search_service.api.errors import describe_validation_error
    from search_service.api.schemas import RerankOptions
    from search_service.retrieval.rerank import rerank_response
    from search_service.services import load_reranker_spec, pick_reranker_spec

    texts = list(passages)
    if passage_file is not None:
        texts += [line.rstrip("\r") for line in passage_file.read().split("\n") if line.strip()]
    if not texts:
        fail("no passages: give them as arguments or with --file (one per line, '-' for stdin)")
    try:
        requested = RerankOptions(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        fail(describe_validation_error(exc))
    spec = pick_reranker_spec(ctx.settings, model, family)
    if spec is None:
        fail("no reranker is configured: pass --model or set RAG_RERANKER_MODEL / RAG_RERANKERS")
    try:
        reranker = load_reranker_spec(spec, ctx.settings.device)
        response = rerank_response(
            reranker, spec.name, query, texts, top_n=top_n, raw_scores=not normalize,
            return_documents=True, options=requested.for_reranker(reranker),
        )
    except ServiceError as exc:
        fail(exc.message)
    if as_json:
        click.echo(json.dumps(response, indent=2, ensure_ascii=False))
        return
    for rank, result in enumerate(response["results"], start=1):
        snippet = " ".join(result["document"]["text"].split())[:200]
        click.echo(f"{rank}. [{result['relevance_score']:.4f}] #{result['index']} {snippet}")
