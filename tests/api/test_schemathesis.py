"""Property-based run of schemathesis over /openapi.json: no request the spec allows makes a 5xx."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def app(tmp_path_factory, minilm_path, minilm_embedder, tiny_reranker):
    from ingestion.pipeline import SourceDocument
    from search_service.app import create_app
    from search_service.retrieval.pipeline import RerankerSet
    from search_service.services import build_services
    from search_service.settings import Settings
    from search_service.store.db import migrate

    data = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite:///{data / 'rag.db'}"
    migrate(url)
    # Small caps keep each generated call cheap on CPU; the spec states them, so schemathesis knows.
    settings = Settings(data_dir=data, database_url=url, embedder_model=minilm_path, reranker_model="tiny",
                        device="cpu", auth="off", max_rerank_documents=8, max_embedding_inputs=8,
                        max_query_chars=512, max_candidates=50, max_top_k=20)
    services = build_services(settings, embedder=minilm_embedder, rerankers=RerankerSet({"tiny": tiny_reranker}, "tiny"))
    services.ingestion.ingest("docs", [SourceDocument(external_id="a", data=b"Pandas eat bamboo.", filename="a.txt")])
    app = create_app(services=services)
    yield app
    services.close()


def test_no_server_errors(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures, statuses = [], {}
    for operation in schema.get_all_operations():
        operation = operation.ok()

        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def run(case):
            response = case.call()
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")

        run()
    print("statuses:", dict(sorted(statuses.items())))
    assert not failures, "\n".join(failures[:20])
    assert sum(statuses.values()) >= 10 * len(list(schema.get_all_operations()))  # it really ran
    assert statuses.get(200, 0) + statuses.get(201, 0) + statuses.get(202, 0) > 50  # and got past validation
