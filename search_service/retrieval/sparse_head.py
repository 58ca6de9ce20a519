"""bge-m3's sparse head: lexical weights per token, as FlagEmbedding's `BGEM3FlagModel` computes them.

A bge-m3 checkpoint ships `sparse_linear.pt`, a `Linear(hidden_size, 1)` over the encoder's last
hidden state. A text's lexical weights are `relu(sparse_linear(last_hidden_state))` per token,
the maximum per token id, without the CLS, EOS, PAD and UNK tokens and without zero weights:
`{"token_id": weight}`. Two texts match with `sum(q[t] * d[t] for t in q if t in d)`.

The head runs on the embedder's own transformer (the first sentence-transformers module), so a
text is not encoded by a second copy of the model; tokenization uses a private copy of the
tokenizer, and calls are serialised behind one lock.
"""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

HEAD_FILE = "sparse_linear.pt"
MAX_LENGTH = 512  # FlagEmbedding's query_max_length and passage_max_length defaults


def find_sparse_head(model_id: str) -> Path | None:
    """`sparse_linear.pt` of a local model directory or a hub checkpoint (cache first), if any."""
    local = Path(model_id)
    if local.is_dir():
        path = local / HEAD_FILE
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model_id, HEAD_FILE))
    except Exception as exc:  # noqa: BLE001 - no head (or no way to get it) means BM25 only
        log.info("%s has no usable %s (%s); sparse search uses BM25", model_id, HEAD_FILE, type(exc).__name__)
        return None


class SparseHead:
    """Lexical weights from an embedder's transformer and a bge-m3 `sparse_linear.pt`."""

    def __init__(self, transformer: torch.nn.Module, tokenizer, head_path: Path, *, batch_size: int = 32, max_length: int = MAX_LENGTH):
        self.transformer = transformer
        self.tokenizer = copy.deepcopy(tokenizer)
        hidden = int(transformer.config.hidden_size)
        self.linear = torch.nn.Linear(hidden, 1)
        self.linear.load_state_dict(torch.load(head_path, map_location="cpu", weights_only=True))
        self.linear.to(device=next(transformer.parameters()).device, dtype=next(transformer.parameters()).dtype)
        self.linear.eval()
        self.batch_size = batch_size
        self.max_length = max_length
        special = (self.tokenizer.cls_token_id, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, self.tokenizer.unk_token_id)
        self.skipped = {int(i) for i in special if i is not None}
        self._lock = threading.Lock()

    @classmethod
    def for_embedder(cls, embedder) -> SparseHead | None:
        """The head of a sentence-transformers embedder whose checkpoint has one, else None."""
        model = getattr(embedder, "model", None)
        path = find_sparse_head(embedder.model_id) if model is not None else None
        if path is None:
            return None
        transformer = getattr(model[0], "auto_model", None)
        if transformer is None:
            log.warning("%s has %s but no transformer module; sparse search uses BM25", embedder.model_id, HEAD_FILE)
            return None
        head = cls(transformer, embedder.tokenizer, path, batch_size=getattr(embedder, "batch_size", 32))
        log.info("sparse head %s loaded: lexical weights at ingestion and query time", path)
        return head

    def encode(self, texts: list[str]) -> list[dict[str, float]]:
        """One `{token_id: weight}` per text, in order."""
        out: list[dict[str, float]] = []
        device = next(self.transformer.parameters()).device
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(device)
                hidden = self.transformer(**batch, return_dict=True).last_hidden_state
                weights = torch.relu(self.linear(hidden)).squeeze(-1).float().cpu().numpy()
                ids = batch["input_ids"].cpu().numpy()
                mask = batch["attention_mask"].cpu().numpy()
                out.extend(self._collect(w, i, m) for w, i, m in zip(weights, ids, mask))
        return out

    def _collect(self, weights, ids, mask) -> dict[str, float]:
        result: dict[str, float] = {}
        for weight, token, keep in zip(weights.tolist(), ids.tolist(), mask.tolist()):
            if keep and weight > 0 and token not in self.skipped:
                key = str(token)
                if weight > result.get(key, 0.0):
                    result[key] = weight
        return result


def lexical_score(query: dict[str, float], passage: dict[str, float]) -> float:
    """FlagEmbedding's `compute_lexical_matching_score`."""
    return float(sum(weight * passage[token] for token, weight in query.items() if token in passage))
