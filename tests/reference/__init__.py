"""Reference environment (FlagEmbedding on transformers 4.46) for parity tests."""
