"""Runs inside the reference env: FlagEmbedding's BGEM3FlagModel lexical weights and dense vectors.

Input: {"checkpoint": dir, "texts": [...], "pairs": [[i, j], ...]}.
Output: {"lexical_weights": [{token_id: weight}, ...], "dense": [[...], ...],
"scores": [compute_lexical_matching_score(w[i], w[j]) for each pair]}.

FlagEmbedding 1.4.2 loads the M3 encoder with `AutoModel.from_pretrained(..., dtype=float32)`, a
keyword transformers 4.46 does not know: it lands in the config as a `torch.dtype`, and the
config's repr (formatted for a log line) fails to serialize it. The model's dtype is therefore
left to the default (float32, what `use_fp16=False` asks for): `get_model_torch_dtype -> None`.
"""

import json
import logging
import sys


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    request = json.load(sys.stdin)
    from FlagEmbedding import BGEM3FlagModel

    BGEM3FlagModel.get_model_torch_dtype = lambda self: None
    model = BGEM3FlagModel(request["checkpoint"], use_fp16=False, devices=["cpu"])
    output = model.encode(request["texts"], return_dense=True, return_sparse=True)
    weights = [{str(k): float(v) for k, v in item.items()} for item in output["lexical_weights"]]
    scores = [
        float(model.compute_lexical_matching_score(output["lexical_weights"][i], output["lexical_weights"][j]))
        for i, j in request.get("pairs", [])
    ]
    json.dump({"lexical_weights": weights, "dense": output["dense_vecs"].tolist(), "scores": scores}, sys.stdout)


if __name__ == "__main__":
    main()
