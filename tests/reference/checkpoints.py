"""Tiny checkpoints saved by FlagEmbedding's own model code (its remote-code classes), in the
reference environment (`env.py`): what the parity tests load with ours and score with theirs.
The same networks saved by our model classes, with no reference environment, are
`search_service.testing.tiny_layerwise` / `tiny_lightweight`'s `make_local_*`.
"""

from __future__ import annotations

import json
from pathlib import Path

from search_service.testing import tiny_layerwise as layerwise
from search_service.testing import tiny_lightweight as lightweight
from tests.reference.env import run_reference_script


def make_tiny_layerwise_reranker(
    path: Path | str, *, seed: int = 0, initializer_range: float = 0.3, **config_changes
) -> Path:
    """Write the tiny checkpoint to `path` (model saved in the reference env; builds it once)."""
    path = Path(path)
    tokenizer = layerwise.write_tokenizer(path)
    config = {
        **layerwise.TINY_CONFIG,
        "vocab_size": tokenizer.get_vocab_size(),
        "initializer_range": initializer_range,
        **config_changes,
    }
    payload = {
        "path": str(path),
        "seed": seed,
        "initializer_range": initializer_range,
        "config": config,
    }
    run_reference_script("make_layerwise.py", payload)
    return path


def make_tiny_lightweight_reranker(
    path: Path | str, *, seed: int = 0, initializer_range: float = 0.5
) -> Path:
    """Write the checkpoint (config, safetensors, remote code, tokenizer) to `path`.

    Needs the FlagEmbedding reference env (built on first use, see `search_service/testing/reference_env.py`).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {
        **lightweight.TINY_CONFIG,
        **lightweight.write_tokenizer(path),
        "initializer_range": initializer_range,
    }
    request = {
        "path": str(path),
        "config": config,
        "seed": seed,
        "initializer_range": initializer_range,
    }
    result = run_reference_script("make_lightweight.py", request)
    (path / "generator.json").write_text(json.dumps(result, indent=2))
    return path
