"""Write an evaluation: `eval.json` (everything), `eval.md` (tables), `runs/*.trec` (rankings)."""

from __future__ import annotations

import json
from pathlib import Path

from search_service.evaluation.metrics import DEFAULT_METRICS

RUN_TAG = "search-service"


def markdown(report: dict) -> str:
    """One table per dataset (stages side by side), and a summary when there are several."""
    lines = [f"# Retrieval evaluation ({report['created']})", ""]
    settings = report["settings"]
    lines += [
        f"- embedder: `{settings['embedder_model']}`",
        f"- reranker: `{settings['reranker_model'] or 'none'}`",
        f"- command: `{report['command']}`",
        "",
    ]
    datasets = report["datasets"]
    if len(datasets) > 1:
        stages = list(dict.fromkeys(name for d in datasets for name in d["stages"]))
        lines += ["## nDCG@10", "", "| dataset | " + " | ".join(stages) + " |",
                  "| --- |" + " ---: |" * len(stages)]
        for d in datasets:
            cells = [_number(d["stages"].get(s, {}).get("metrics", {}).get("nDCG@10")) for s in stages]
            lines.append(f"| {d['dataset']} | " + " | ".join(cells) + " |")
        lines.append("")
    for d in datasets:
        lines += dataset_section(d)
    return "\n".join(lines).rstrip() + "\n"


def dataset_section(d: dict) -> list[str]:
    ingestion = d["ingestion"]
    chunking = f"chunks of {ingestion['chunk_tokens']} tokens, overlap {ingestion['chunk_overlap']}"
    if ingestion.get("truncated_to_tokens"):
        chunking += f"; documents truncated to {ingestion['truncated_to_tokens']} tokens"
    sampled = ""
    if d.get("corpus_sampled_from"):
        sampled = (f" **Corpus sampled: {d['corpus_documents']} of {d['corpus_sampled_from']} documents "
                   "(every judged one kept); not comparable with published figures.**")
    lines = [
        f"## {d['dataset']} ({d['split']})",
        "",
        (f"{d['queries']} queries, {ingestion['documents']} documents ({ingestion['failed']} failed) "
         f"in {ingestion['chunks']} chunks; collection `{d['collection']}` ({ingestion['action']}, "
         f"{ingestion['seconds']} s); {chunking}; top {d['depth']} chunks per query, merged by document.{sampled}"),
        "",
        "| stage | " + " | ".join(DEFAULT_METRICS) + " | ms/query |",
        "| --- |" + " ---: |" * (len(DEFAULT_METRICS) + 1),
    ]
    for name, stage in d["stages"].items():
        cells = [_number(stage["metrics"].get(metric)) for metric in DEFAULT_METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {stage['ms_per_query']:.1f} |")
    for name, reason in d["skipped"].items():
        lines.append(f"| {name} | " + " | ".join("–" for _ in DEFAULT_METRICS) + f" | skipped: {reason} |")
    lines.append("")
    return lines + paired_section(d)


def paired_section(d: dict) -> list[str]:
    """Each stage against the first, query by query: wins, losses, ties and the bootstrap CI."""
    compared = {name: stage["paired"] for name, stage in d["stages"].items() if stage.get("paired")}
    if not compared:
        return []
    first = next(iter(compared.values()))
    lines = [
        (f"Paired against `{first['baseline']}` on {first['metric']}, per query (wins / losses / ties), "
        f"with a paired bootstrap 95 % CI of the mean difference ({first['resamples']:,} resamples, "
        f"seed {first['seed']}):"),
        "",
        "| stage | Δ mean | 95 % CI | wins | losses | ties |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, p in compared.items():
        weight = d["stages"][name].get("rerank_fusion_dense_weight")
        label = f"{name} (dense weight {weight:g})" if weight is not None else name
        low, high = p["ci95"]
        lines.append(f"| {label} | {p['mean_difference']:+.4f} | [{low:+.4f}, {high:+.4f}] "
                     f"| {p['wins']} | {p['losses']} | {p['ties']} |")
    lines.append("")
    return lines


def _number(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def write(report: dict, output: Path) -> dict[str, Path]:
    """Write the files into `output` (created); returns their paths by kind."""
    output = Path(output)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    paths = {"json": output / "eval.json", "markdown": output / "eval.md"}
    for d in report["datasets"]:
        for stage, run in d.get("runs", {}).items():
            path = output / "runs" / f"{d['dataset']}.{stage}.trec"
            with path.open("w", encoding="utf-8") as handle:
                for query, docs in run.items():
                    for rank, (doc, score) in enumerate(docs, start=1):
                        handle.write(f"{query} Q0 {doc} {rank} {score:.6f} {RUN_TAG}-{stage}\n")
            paths[f"run:{d['dataset']}.{stage}"] = path
    summary = {**report, "datasets": [{k: v for k, v in d.items() if k != "runs"} for d in report["datasets"]]}
    paths["json"].write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(summary), encoding="utf-8")
    return paths
