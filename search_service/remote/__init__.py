"""Serving engines other processes run: rerank and embed over HTTP instead of loading weights.

    config.py     `RemoteConfig`: protocol, URL, model, deadline, retries, breaker (from settings)
    client.py     pooled HTTP (httpx) with a deadline per call, retries with back-off, a breaker
    breaker.py    the circuit breaker: closed -> open after N failed calls -> one trial -> closed
    protocols.py  the rerank protocols (tei, vllm, infinity, cohere): request, batch limit, scores

The reranker runtime is `rerankers/runtimes/remote.py`, the embedder `embedding/remote.py`.
"""
