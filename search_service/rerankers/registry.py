"""Reranker families: one module each, found through one dict, detected from config.json.

Adding a family (`llm`, `layerwise`, `lightweight`) means writing its module with a `Reranker`
subclass and adding one `Family` entry below; detection runs in the dict's order, so put more
specific detectors (layerwise, lightweight) before more general ones (llm).

Some rerankers are plain causal LMs whose config.json cannot tell them from any other
(Qwen3-Reranker is a `Qwen3ForCausalLM`, mxbai-rerank-v2 a `Qwen2ForCausalLM`): their family has
no config detector, and `choose_family` picks it, in this order, by

1. the family given (`family=`: a `#family=<name>` suffix on the source, RAG_RERANKER_FAMILY);
2. the checkpoint's config.json (`FAMILIES` in order);
3. for a checkpoint detected as `llm`, its hub id or directory name (`NAME_RULES`).

and says which rule chose it (logged by `load_reranker`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from search_service.errors import ConfigurationError, ModelLoadError
from search_service.rerankers.base import Reranker


def _num_labels(config: dict[str, Any]) -> int:
    # transformers derives num_labels from id2label, and defaults to 2 when neither is given.
    if isinstance(config.get("id2label"), dict):
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


def is_single_label_classifier(config: dict[str, Any]) -> bool:
    """A one-label `*ForSequenceClassification`: bge-reranker-base/large/v2-m3, ms-marco models."""
    architectures = config.get("architectures") or []
    classifier = any(str(arch).endswith("ForSequenceClassification") for arch in architectures)
    if not classifier:
        auto_map = config.get("auto_map") or {}
        classifier = "AutoModelForSequenceClassification" in auto_map
    return classifier and _num_labels(config) == 1


# Decoder-only model types that transformers' AutoModelForCausalLM loads with its own code: a
# config naming one of them with no `architectures` (or only a bare `*Model`) is an llm reranker.
CAUSAL_LM_MODEL_TYPES = frozenset(
    {
        "cohere",
        "gemma",
        "gemma2",
        "gemma3_text",
        "glm",
        "glm4",
        "granite",
        "llama",
        "ministral",
        "mistral",
        "mixtral",
        "olmo",
        "olmo2",
        "phi",
        "phi3",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "smollm3",
        "stablelm",
        "starcoder2",
    }
)
# The layerwise and lightweight classes are causal LMs too, detected by their own families first.
SPECIFIC_CAUSAL_LMS = ("LayerWise", "CostWise")


def is_causal_lm(config: dict[str, Any]) -> bool:
    """A plain causal LM, by the first of: `architectures` (`*ForCausalLM`), `auto_map`
    (`AutoModelForCausalLM`, remote code), `model_type` (`CAUSAL_LM_MODEL_TYPES`). The model type
    counts only when no architecture names another head (`GemmaForSequenceClassification`)."""
    architectures = [str(arch) for arch in config.get("architectures") or []]
    if any(
        arch.endswith("ForCausalLM") and not arch.startswith(SPECIFIC_CAUSAL_LMS)
        for arch in architectures
    ):
        return True
    remote = str((config.get("auto_map") or {}).get("AutoModelForCausalLM") or "")
    if remote and not remote.rpartition(".")[2].startswith(SPECIFIC_CAUSAL_LMS):
        return True
    other_head = any("For" in arch for arch in architectures)
    return not other_head and config.get("model_type") in CAUSAL_LM_MODEL_TYPES


@dataclass(frozen=True)
class Family:
    name: str
    target: str  # "module:Class", imported only when the family is used
    # None: never detected from config.json alone (chosen by name or by `family=`)
    detect: Callable[[dict[str, Any]], bool] | None
    description: str


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in [
        Family(
            "encoder",
            "search_service.rerankers.families.encoder:EncoderReranker",
            is_single_label_classifier,
            "cross-encoder with a one-label sequence-classification head (bge-reranker-v2-m3)",
        ),
        # layerwise and lightweight go above: their architectures also end in ForCausalLM.
        Family(
            "layerwise",
            "search_service.rerankers.families.layerwise:LayerwiseReranker",
            # Plain MiniCPM LMs are "minicpm" too: only layerwise configs have start_layer.
            lambda config: (
                "LayerWiseMiniCPMForCausalLM" in (config.get("architectures") or [])
                or str((config.get("auto_map") or {}).get("AutoModelForCausalLM", "")).endswith(
                    ".LayerWiseMiniCPMForCausalLM"
                )
                or (config.get("model_type") == "minicpm" and "start_layer" in config)
            ),
            "MiniCPM with a relevance head per layer, LayerWiseMiniCPMForCausalLM "
            "(bge-reranker-v2-minicpm-layerwise)",
        ),
        Family(
            "lightweight",
            "search_service.rerankers.families.lightweight:LightweightReranker",
            lambda config: (
                "CostWiseGemmaForCausalLM" in (config.get("architectures") or [])
                or config.get("model_type") == "cost_wise_gemma"
                or str((config.get("auto_map") or {}).get("AutoModelForCausalLM", "")).endswith(
                    ".CostWiseGemmaForCausalLM"
                )
            ),
            "Gemma2 with per-layer relevance heads and token compression, "
            "CostWiseGemmaForCausalLM (bge-reranker-v2.5-gemma2-lightweight)",
        ),
        Family(
            "llm",
            "search_service.rerankers.families.llm:LLMReranker",
            is_causal_lm,
            "decoder-only LLM scored by its 'Yes' logit: a *ForCausalLM architecture, a causal LM "
            "model_type (gemma, llama, qwen2, mistral...) or an AutoModelForCausalLM auto_map "
            "(bge-reranker-v2-gemma)",
        ),
        Family(
            "qwen3-reranker",
            "search_service.rerankers.families.qwen3:Qwen3Reranker",
            None,  # a plain Qwen3ForCausalLM: chosen by name (NAME_RULES) or #family=
            "Qwen3-Reranker (0.6B/4B/8B): a Qwen3ForCausalLM in a chat template, scored by "
            "logit('yes') - logit('no')",
        ),
        Family(
            "mxbai-rerank",
            "search_service.rerankers.families.mxbai:MxbaiReranker",
            None,  # a plain Qwen2ForCausalLM: chosen by name (NAME_RULES) or #family=
            "mxbai-rerank-v2 (base/large): a Qwen2ForCausalLM in a chat template, scored by "
            "logit('1') - logit('0')",
        ),
    ]
}


@dataclass(frozen=True)
class NameRule:
    """A causal LM whose hub id or directory name contains `fragment` (any case) is `family`."""

    fragment: str
    family: str

    def matches(self, name: str) -> bool:
        return self.fragment.lower() in name.lower()


# Tried, in order, on checkpoints whose config.json says `llm`; a rule whose family is not
# registered in FAMILIES is skipped.
NAME_RULES = (
    NameRule("Qwen3-Reranker", "qwen3-reranker"),
    NameRule("mxbai-rerank", "mxbai-rerank"),  # registered by the mxbai family module's entry
)
FAMILY_SUFFIX = "#family="
# A Hugging Face cache snapshot: .../models--Org--Name/snapshots/<revision>
_HUB_CACHE_DIR = re.compile(r"models--(?P<name>[^/\\]+)[/\\]snapshots[/\\][^/\\]+[/\\]?$")


def known_families() -> list[str]:
    return list(FAMILIES)


def _describe_config(config: dict[str, Any]) -> str:
    keys = ("architectures", "model_type", "auto_map")
    return (
        ", ".join(f"{key}={config.get(key)!r}" for key in keys if config.get(key) is not None)
        or "empty config"
    )


def detect_family(config: dict[str, Any], name: str = "checkpoint") -> str:
    """The family config.json names (rules 2 and 3 of `choose_family`, without the reason)."""
    return choose_family(config, name)[0]


def split_family_suffix(source: str) -> tuple[str, str | None]:
    """`path_or_id#family=<name>` -> (path_or_id, name); without the suffix, (source, None)."""
    path, sep, family = source.rpartition(FAMILY_SUFFIX)
    if not sep or not path.strip() or not family.strip():
        return source, None
    return path.strip(), family.strip()


def checkpoint_name(name_or_path: str) -> str:
    """What the name rules read: the last part of a hub id or directory (`Qwen3-Reranker-0.6B`),
    or of the repository of a hub cache snapshot (`.../models--Qwen--Qwen3-Reranker-0.6B/...`)."""
    cached = _HUB_CACHE_DIR.search(name_or_path)
    if cached:
        return cached.group("name").split("--")[-1]
    return re.split(r"[/\\]", name_or_path.rstrip("/\\"))[-1] or name_or_path


def choose_family(
    config: dict[str, Any], name: str = "checkpoint", family: str | None = None
) -> tuple[str, str]:
    """(family, the rule that chose it): see the module docstring for the order."""
    if family:
        return family, f"family={family} was given"
    for candidate in FAMILIES.values():
        if candidate.detect is not None and candidate.detect(config):
            break
    else:
        known = "; ".join(f"{family.name}: {family.description}" for family in FAMILIES.values())
        raise ModelLoadError(
            f"cannot tell which reranker family {name!r} belongs to ({_describe_config(config)}). "
            f"Known families: {known}. Pass family=<name> (or a #family=<name> suffix) to choose "
            "one, if the model fits it."
        )
    if candidate.name == "llm":
        short = checkpoint_name(name)
        for rule in NAME_RULES:
            if rule.family in FAMILIES and rule.matches(short):
                return rule.family, (
                    f"a causal LM named {short!r}, which contains {rule.fragment!r}"
                )
    return candidate.name, f"config.json ({_describe_config(config)})"


def _import_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":") if ":" in target else target.rpartition(".")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"invalid reranker class path {target!r}: expected 'package.module.Class'"
        )
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigurationError(f"cannot import reranker class {target!r}: {error}") from error


def family_class(family: str) -> type[Reranker]:
    """The class for a family name, or for a dotted path to a `Reranker` subclass."""
    if family in FAMILIES:
        return _import_target(FAMILIES[family].target)
    if "." not in family and ":" not in family:
        raise ConfigurationError(
            f"unknown reranker family {family!r}; known families: {', '.join(FAMILIES)} "
            "(or a dotted path to a Reranker subclass)"
        )
    cls = _import_target(family)
    if not (isinstance(cls, type) and issubclass(cls, Reranker)):
        raise ConfigurationError(f"{family!r} is not a subclass of {Reranker.__module__}.Reranker")
    return cls
