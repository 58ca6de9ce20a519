"""Runs inside the reference env: saves a tiny bge-reranker-v2.5-gemma2-lightweight model from
FlagEmbedding's own `CostWiseGemmaForCausalLM`, so the weight names, shapes and config are the ones
the published checkpoint has.

Input (JSON on stdin): {"path": dir, "config": {CostWiseGemmaConfig kwargs}, "seed": int,
"initializer_range": float}. The tokenizer files are written by the caller.
Output: {"parameters": {name: shape}} of the saved state dict, and the attention implementation
FlagEmbedding's loading picks for it (`attn_implementation`).

Like the published checkpoint, the directory also holds the remote code (FlagEmbedding's
`gemma_model.py` and `gemma_config.py`, copied as they are) and a config `auto_map` pointing at
them.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from FlagEmbedding.inference.reranker.decoder_only.models import gemma_config, gemma_model
from safetensors import safe_open

AUTO_MAP = {
    "AutoConfig": "gemma_config.CostWiseGemmaConfig",
    "AutoModel": "gemma_model.CostWiseGemmaModel",
    "AutoModelForCausalLM": "gemma_model.CostWiseGemmaForCausalLM",
}


def randomize(model, seed, initializer_range):
    """Wide weights, perturbed norms (Gemma scales by 1 + weight) and heads, drawn with one
    generator in parameter-name order."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("norm.weight"):
                param.copy_(0.3 * noise)
            elif name.startswith("lm_head."):
                param.copy_(1.0 * noise)
            else:
                param.copy_(initializer_range * noise)


def main():
    request = json.load(sys.stdin)
    path = Path(request["path"])
    path.mkdir(parents=True, exist_ok=True)
    config = gemma_config.CostWiseGemmaConfig(**request["config"])
    config.architectures = ["CostWiseGemmaForCausalLM"]
    config.auto_map = dict(AUTO_MAP)
    torch.manual_seed(request["seed"])
    model = gemma_model.CostWiseGemmaForCausalLM(config)
    randomize(model, request["seed"], request["initializer_range"])
    model.eval()
    model.save_pretrained(str(path), safe_serialization=True)
    for module in (gemma_config, gemma_model):
        shutil.copyfile(module.__file__, path / Path(module.__file__).name)
    with safe_open(str(path / "model.safetensors"), framework="pt") as saved:
        names = saved.keys()
        parameters = {name: list(saved.get_slice(name).get_shape()) for name in names}
    # How LightWeightFlagLLMReranker loads it: no attn_implementation, so transformers picks one.
    loaded = gemma_model.CostWiseGemmaForCausalLM.from_pretrained(str(path))
    json.dump(
        {"parameters": parameters, "attn_implementation": loaded.config._attn_implementation},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
