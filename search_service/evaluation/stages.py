"""The stages of an evaluation: which `SearchPipeline.search` options each row of the report uses,
and which of them this service can run (the pipeline's signature, the loaded rerankers, the
rerank fusion weight)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

from search_service.errors import InvalidRequestError


@dataclass(frozen=True)
class Stage:
    """One column of the report: how `SearchPipeline.search` is called for it."""

    name: str
    mode: str | None = None  # the pipeline's `mode=` ("dense", "sparse", "hybrid")
    rerank: bool = False
    fused: bool = False  # rerank fusion with the dense scores (EvalOptions.rerank_fusion_weight)

    def search_options(self, pipeline_takes_mode: bool, fusion_weight: float | None = None) -> dict:
        """`fusion_weight`: the rerank fusion weight of a reranked stage (None: the pipeline
        takes no `rerank_fusion=`); a plain reranked stage asks for 0, the reranker alone."""
        options: dict = {"rerank": self.rerank}
        if pipeline_takes_mode and self.mode is not None:
            options["mode"] = self.mode
        if self.rerank and fusion_weight is not None:
            options["rerank_fusion"] = fusion_weight if self.fused else 0.0
        return options


STAGES: tuple[Stage, ...] = (
    Stage("dense", mode="dense"),
    Stage("sparse", mode="sparse"),
    Stage("hybrid", mode="hybrid"),
    Stage("reranked", mode="dense", rerank=True),
    Stage("reranked-fused", mode="dense", rerank=True, fused=True),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def pipeline_takes_mode(pipeline) -> bool:
    return "mode" in inspect.signature(type(pipeline).search).parameters


def pipeline_takes_rerank_fusion(pipeline) -> bool:
    return "rerank_fusion" in inspect.signature(type(pipeline).search).parameters


def fusion_weight(services, options_weight: float | None) -> float | None:
    """The `reranked-fused` stage's dense weight: the option, else the pipeline's default; None
    when the pipeline cannot fuse."""
    if not pipeline_takes_rerank_fusion(services.search):
        return None
    if options_weight is not None:
        return options_weight
    return float(getattr(services.search, "default_rerank_fusion_weight", 0.0))


def stage_status(services, rerank_fusion_weight: float | None = None) -> dict[str, str | None]:
    """Stage name -> None when it can run here, else why not."""
    takes_mode = pipeline_takes_mode(services.search)
    has_reranker = bool(services.search.rerankers.rerankers)
    weight = fusion_weight(services, rerank_fusion_weight)
    status: dict[str, str | None] = {}
    for stage in STAGES:
        if stage.mode not in (None, "dense") and not takes_mode:
            status[stage.name] = f"the search pipeline has no mode={stage.mode!r}"
        elif stage.rerank and not has_reranker:
            status[stage.name] = "no reranker is configured (RAG_RERANKER_MODEL=none)"
        elif stage.fused and weight is None:
            status[stage.name] = "the search pipeline has no rerank_fusion="
        elif stage.fused and weight <= 0:
            status[stage.name] = "no rerank fusion weight (--rerank-fusion-weight or RAG_RERANK_FUSION_DENSE_WEIGHT above 0)"
        else:
            status[stage.name] = None
    return status


def select_stages(
    services, requested: Sequence[str] | None, rerank_fusion_weight: float | None = None
) -> tuple[list[Stage], dict[str, str]]:
    """(stages to run, {skipped stage: reason}). Requested stages that cannot run are an error."""
    status = stage_status(services, rerank_fusion_weight)
    if requested:
        unknown = [name for name in requested if name not in status]
        if unknown:
            raise InvalidRequestError(
                f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGE_NAMES)}", code="invalid_stage"
            )
        blocked = [f"{name} ({status[name]})" for name in requested if status[name]]
        if blocked:
            raise InvalidRequestError(f"cannot run stage {', '.join(blocked)}", code="invalid_stage")
        wanted = set(requested)
        return [s for s in STAGES if s.name in wanted], {}
    return [s for s in STAGES if status[s.name] is None], {n: r for n, r in status.items() if r}
