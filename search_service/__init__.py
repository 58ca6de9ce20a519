"""Self-hosted rerank-first retrieval service for RAG."""

__version__ = "0.1.0"


def create_app(settings=None, **kwargs):
    """See `search_service.app.create_app` (imported lazily: torch is slow to import)."""
    from search_service.app import create_app as factory

    return factory(settings, **kwargs)


__all__ = ["__version__", "create_app"]
