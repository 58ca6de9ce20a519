"""Runs inside the reference env: saves a tiny bge-reranker-v2-minicpm-layerwise model from
FlagEmbedding's own `LayerWiseMiniCPMForCausalLM`, so the weight names, shapes and config are the
ones the published checkpoint has.

Input (JSON on stdin): {"path": dir, "config": {LayerWiseMiniCPMConfig kwargs}, "seed": int,
"initializer_range": float}. The tokenizer files are written by the caller.
Output: {"parameters": {name: shape}} of the saved model.

Like the published checkpoint, the directory also holds the remote code (FlagEmbedding's modeling
and configuration files, copied as they are) and a config `auto_map` pointing at them, so
`AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)` works under transformers 4.46.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from FlagEmbedding.inference.reranker.decoder_only.models import (
    configuration_minicpm_reranker,
    modeling_minicpm_reranker,
)

AUTO_MAP = {
    "AutoConfig": "configuration_minicpm_reranker.LayerWiseMiniCPMConfig",
    "AutoModel": "modeling_minicpm_reranker.LayerWiseMiniCPMModel",
    "AutoModelForCausalLM": "modeling_minicpm_reranker.LayerWiseMiniCPMForCausalLM",
}


def randomize(model, seed, initializer_range):
    """Wide weights, perturbed norms and heads, one generator in parameter-name order."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.3 * noise)
            elif name.startswith("lm_head."):
                param.copy_(1.0 * noise)
            else:
                param.copy_(initializer_range * noise)


def main():
    request = json.load(sys.stdin)
    path = Path(request["path"])
    path.mkdir(parents=True, exist_ok=True)
    config = configuration_minicpm_reranker.LayerWiseMiniCPMConfig(**request["config"])
    config.architectures = ["LayerWiseMiniCPMForCausalLM"]
    config.auto_map = dict(AUTO_MAP)
    torch.manual_seed(request["seed"])
    model = modeling_minicpm_reranker.LayerWiseMiniCPMForCausalLM(config)
    randomize(model, request["seed"], request["initializer_range"])
    model.eval()
    model.save_pretrained(str(path), safe_serialization=True)
    for module in (configuration_minicpm_reranker, modeling_minicpm_reranker):
        shutil.copyfile(module.__file__, path / Path(module.__file__).name)
    parameters = {name: list(param.shape) for name, param in model.state_dict().items()}
    json.dump({"parameters": parameters}, sys.stdout)


if __name__ == "__main__":
    main()
