"""Shared fixtures: databases (SQLite and PostgreSQL), the real MiniLM embedder, app factories."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A developer's ./search-service.env (written by the demo) must not reach the processes tests
# start; the tests of the file itself name theirs.
os.environ["RAG_SETTINGS_FILE"] = "none"

POSTGRES_ADMIN_URL = os.environ.get(
    "RAG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _postgres_database():
    """Create a throwaway database on the test server; yields its URL, drops it afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"rag_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            "or point RAG_TEST_POSTGRES_URL at a server"
        )
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """An empty, un-migrated database: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rag.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def migrated_url(database_url):
    from search_service.store.db import migrate

    migrate(database_url)
    return database_url


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from search_service.testing.minilm import minilm_path as find

    return find()


@pytest.fixture(scope="session")
def minilm_embedder(minilm_path):
    """The real all-MiniLM-L6-v2, loaded once for the session."""
    from search_service.embedding import load_embedder

    return load_embedder(minilm_path, device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory) -> Path:
    from search_service.testing.tiny_encoder import make_tiny_encoder_reranker

    return make_tiny_encoder_reranker(tmp_path_factory.mktemp("tiny-encoder-reranker"))


@pytest.fixture(scope="session")
def tiny_reranker(tiny_reranker_dir):
    from search_service.rerankers import load_reranker

    return load_reranker(str(tiny_reranker_dir), device="cpu")


@pytest.fixture(scope="session")
def infinity_peer(tmp_path_factory):
    """The real Infinity serving a tiny reranker and MiniLM (tests/support/infinity_server.py)."""
    from tests.support.infinity_server import infinity_peer as start

    with start(tmp_path_factory.mktemp("infinity")) as peer:
        yield peer


@pytest.fixture
def make_services(tmp_path, minilm_path, minilm_embedder):
    """Build Services on a migrated database with the shared models (no reload per test)."""
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings

    built = []

    def factory(url: str, reranker=None, **settings_overrides):
        name = settings_overrides.pop("reranker_name", "tiny-reranker")
        settings_overrides.setdefault("auth", "off")  # auth tests turn it on
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            embedder_model=minilm_path,
            reranker_model=name if reranker is not None else None,
            device="cpu",
            **settings_overrides,
        )
        rerankers = RerankerSet({name: reranker}, name) if reranker is not None else RerankerSet({}, None)
        services = build_services(settings, embedder=minilm_embedder, rerankers=rerankers)
        built.append(services)
        return services

    yield factory
    for services in built:
        services.close()


@pytest.fixture
def app_factory(make_services):
    from search_service.app import create_app

    def factory(url: str, reranker=None, **overrides):
        app = create_app(services=make_services(url, reranker, **overrides))
        app.config["TESTING"] = True
        return app

    return factory
