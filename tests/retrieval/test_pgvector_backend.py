"""What only the pgvector backend has: its query plans, halfvec, moving a collection, the
migration's pgvector part and its error when the extension cannot be created."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from search_service.errors import ConfigurationError
from search_service.retrieval.pgvector_store import (
    RESET_PLANNER,
    SEARCH_SETTINGS,
    approximate_sql,
    as_text,
    exact_sql,
)
from search_service.store import collections as store
from search_service.store.db import migrate
from search_service.store.vectors import VectorLayout, index_name, move_collection
from tests.retrieval.test_vector_store_contract import Harness, exact, populate, unit
from tests.support.pgvector_server import throwaway_database

pytestmark = pytest.mark.pgvector


def explain(session, sql: str, params: dict) -> str:
    return "\n".join(row[0] for row in session.execute(text("EXPLAIN " + sql), params))


def test_the_hnsw_index_answers_unfiltered_searches_and_never_narrow_filters(pgvector_url, tmp_path):
    h = Harness("pgvector", pgvector_url, tmp_path)
    _ids, _vectors, by_document = populate(h, documents=5)
    with h.database.session() as session:
        collection = store.get_collection(session, "c")
        params = {"q": as_text(unit(1, 3)[0]), "k": 5, "ids": [i for d in by_document.values() for i in d]}
        assert "hnsw" not in explain(session, exact_sql(collection, True), params)
        session.execute(text(SEARCH_SETTINGS), {"ef": "64", "scan": "relaxed_order", "tuples": "20000"})
        for filtered in (False, True):  # a broad filter is applied inside the index scan
            assert f"Index Scan using {index_name(collection.id)}" in explain(session, approximate_sql(collection, filtered), params)
        session.execute(text(RESET_PLANNER))
        assert session.execute(text("SHOW enable_sort")).scalar() == "on"
        assert "hnsw" not in explain(session, exact_sql(collection, True), params)
    h.close()


def test_halfvec_collections_search_a_half_precision_index(pgvector_url, tmp_path):
    h = Harness("pgvector", pgvector_url, tmp_path)
    h.settings = h.settings.replace(pgvector_type="halfvec")
    h.database.sessions.kw["info"]["vector_layout"] = VectorLayout.from_settings(h.settings)
    ids, vectors, _ = populate(h)
    with h.database.session() as session:
        assert store.get_collection(session, "c").vector_type == "halfvec"
        definition = session.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": index_name(store.get_collection(session, "c").id)}
        ).scalar()
    assert "halfvec(32)" in definition and "halfvec_ip_ops" in definition
    query = unit(1, 8)[0]
    hits = [i for i, _ in h.search(query, 10)]
    assert len(set(hits) & set(exact(ids, vectors, query, 10))) >= 9
    h.close()


def test_moving_a_collection_between_backends_keeps_its_results(pgvector_url, tmp_path):
    faiss = Harness("faiss", pgvector_url, tmp_path)  # a FAISS collection on PostgreSQL
    ids, vectors, _ = populate(faiss)
    query = unit(1, 17)[0]
    truth = exact(ids, vectors, query, 10)
    assert [i for i, _ in faiss.search(query, 10)] == truth
    for backend in ("pgvector", "faiss", "pgvector"):
        with faiss.database.session() as session:
            moved = move_collection(session, store.get_collection(session, "c"), VectorLayout(backend=backend))
        assert moved == len(ids)
        with faiss.database.session() as session:
            collection = store.get_collection(session, "c")
            assert collection.vector_backend == backend
            rows = session.execute(text("SELECT count(*) FROM chunk_vectors WHERE collection_id = :c"), {"c": collection.id}).scalar()
        assert rows == (len(ids) if backend == "pgvector" else 0)
        assert [i for i, _ in faiss.search(query, 10)] == truth  # the same process, routed anew
    with faiss.database.session() as session:
        store.delete_collection(session, store.get_collection(session, "c"))
        assert session.execute(text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'ix_chunk_vectors_hnsw_%'")).scalar() == 0
    faiss.close()


def test_migrating_with_faiss_or_on_sqlite_creates_no_pgvector_schema(pgvector_admin_url, tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'rag.db'}"
    migrate(sqlite)
    engine = create_engine(sqlite)
    assert "chunk_vectors" not in inspect(engine).get_table_names()
    assert {c["name"] for c in inspect(engine).get_columns("collections")} >= {"vector_backend", "vector_type"}
    engine.dispose()
    with pytest.raises(ConfigurationError, match="needs PostgreSQL"):
        migrate(f"sqlite:///{tmp_path / 'other.db'}", vector_backend="pgvector")
    with throwaway_database(pgvector_admin_url) as url:
        migrate(url)
        engine = create_engine(url)
        with engine.connect() as connection:
            assert not connection.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")).scalar()
        assert "chunk_vectors" not in inspect(engine).get_table_names()
        migrate(url, vector_backend="pgvector")  # later: the pgvector part on an up-to-date schema
        assert "chunk_vectors" in inspect(engine).get_table_names()
        engine.dispose()


def test_a_role_that_cannot_create_the_extension_is_told_the_fix(pgvector_admin_url):
    with throwaway_database(pgvector_admin_url) as url:
        name = make_url(url).database
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:  # an application role owning its database, no superuser
            connection.execute(text("DROP ROLE IF EXISTS rag_app"))
            connection.execute(text("CREATE ROLE rag_app LOGIN"))
            connection.execute(text(f'ALTER DATABASE "{name}" OWNER TO rag_app'))
            connection.execute(text("ALTER SCHEMA public OWNER TO rag_app"))
        as_app = make_url(url).set(username="rag_app").render_as_string(hide_password=False)
        with pytest.raises(ConfigurationError, match="CREATE EXTENSION vector") as error:
            migrate(as_app, vector_backend="pgvector")
        assert "superuser" in str(error.value)
        with admin.connect() as connection:  # the fix: a superuser creates it once
            connection.execute(text("CREATE EXTENSION vector"))
        migrate(as_app, vector_backend="pgvector")  # then the application role finishes the job
        engine = create_engine(as_app)
        assert "chunk_vectors" in inspect(engine).get_table_names()
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" OWNER TO postgres'))
            connection.execute(text("REASSIGN OWNED BY rag_app TO postgres"))
            connection.execute(text("DROP OWNED BY rag_app"))
        admin.dispose()


def test_collections_created_by_a_process_of_either_backend_keep_their_own(pgvector_url, tmp_path):
    pg = Harness("pgvector", pgvector_url, tmp_path / "a")
    pg.create("vectors-in-pg")
    fa = Harness("faiss", pgvector_url, tmp_path / "b")
    fa.create("vectors-in-faiss")
    vectors = unit(4, 1)
    pg.write("x", vectors[:2], collection="vectors-in-faiss")
    fa.write("y", vectors[2:], collection="vectors-in-pg")
    for h in (pg, fa):
        assert h.search(vectors[0], 1, collection="vectors-in-faiss")[0][1] == pytest.approx(1.0, abs=1e-5)
        assert h.search(vectors[3], 1, collection="vectors-in-pg")[0][1] == pytest.approx(1.0, abs=1e-5)
    with pg.database.session() as session:
        assert store.get_collection(session, "vectors-in-faiss").vector_backend == "faiss"
        assert session.execute(text("SELECT count(*) FROM chunk_vectors")).scalar() == 2
    pg.close()
    fa.close()


def test_the_cli_ingests_searches_moves_and_reindexes_a_pgvector_collection(pgvector_url, tmp_path, minilm_path):
    from click.testing import CliRunner

    from search_service.cli import main
    from tests.support.documents import DOCUMENTS, PARAPHRASES

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, body in DOCUMENTS.items():
        (corpus / name).write_text(body)
    env = {
        "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_DATABASE_URL": pgvector_url, "RAG_EMBEDDER_MODEL": minilm_path,
        "RAG_RERANKER_MODEL": "none", "RAG_DEVICE": "cpu", "RAG_VECTOR_BACKEND": "pgvector",
    }

    def invoke(*args):
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    invoke("migrate")
    invoke("ingest", str(corpus), "--collection", "docs")
    engine = create_engine(pgvector_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT vector_backend FROM collections WHERE name = 'docs'")).scalar() == "pgvector"
        rows = connection.execute(text("SELECT count(*) FROM chunk_vectors")).scalar()
    engine.dispose()
    assert rows > 0
    import json

    def top_source():
        return json.loads(invoke("search", PARAPHRASES["gil.md"], "--collection", "docs", "--json"))["results"][0]["document_id"]

    assert top_source() == "gil.md"
    assert f"pgvector -> faiss ({rows} vectors)" in invoke("move-collection", "docs", "--to", "faiss")
    assert top_source() == "gil.md"
    invoke("move-collection", "docs", "--to", "pgvector")
    assert "pgvector HNSW index rebuilt" in invoke("reindex", "-c", "docs")
    assert top_source() == "gil.md"
