"""Document ingestion: bytes to text (`ingestion.parsers`) and text to token-bounded chunks (`ingestion.chunking`)."""
