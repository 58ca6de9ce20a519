"""Fine-tuning a reranker on a collection's own judgments.

`judgments`: judged queries (BEIR qrels + queries, or a JSONL of query -> relevant ids);
`mining`: training lines in FlagEmbedding's format, negatives mined with the service's first stage;
`training`: sentence-transformers' `CrossEncoderTrainer` on those lines; `dev`: the trained
checkpoint scored on the held-out queries through the service's reranker loader; `card`: README.md.
"""
