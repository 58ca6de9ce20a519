"""Two `serve` replicas and two `worker`s on one PostgreSQL with pgvector, under SIGKILL: the short
form of scripts/replicas.py (the long one's figures are in docs/scaling.md).

Two client threads spread uploads, deletes, reads and searches over the replicas in rotation;
one worker and one replica are SIGKILLed mid-run and started again (the replica rejoins the
rotation once ready). After the queue drains: no acknowledged upload lost, nothing deleted
returned, the same answers from both replicas to the same queries, no 5xx from either (requests
that were on the killed replica end in connection errors, counted apart). A failure prints the
seed: RAG_REPLICAS_SEED=N reruns the same operations.
"""

from __future__ import annotations

import os
import random

import pytest

from scripts.live import Deployment
from scripts.replicas import failures, run, table

pytestmark = [pytest.mark.slow, pytest.mark.pgvector]
SEED = int(os.environ.get("RAG_REPLICAS_SEED") or random.SystemRandom().randrange(2**31))


@pytest.fixture
def pgvector_database():
    from tests.support.pgvector_server import pgvector_server, throwaway_database

    with pgvector_server() as admin, throwaway_database(admin) as url:
        yield url


def test_two_replicas_and_two_workers_lose_nothing_when_one_of_each_is_killed(pgvector_database, tmp_path, minilm_path):
    with Deployment(tmp_path / "data", pgvector_database, minilm_path, replicas=2, workers=2,
                    env={"RAG_VECTOR_BACKEND": "pgvector"}) as deployment:
        result = run(deployment, cycles=1, cycle_seconds=10, clients=2, seed=SEED, pace=0.1)
    print(f"seed {SEED}\n{table(result, 2)}")
    assert (result["replica_kills"], result["worker_kills"]) == (1, 1)
    assert result["uploads_acknowledged"] >= 5 and result["documents_audited"] > 0, result
    assert result["queries_compared"] > 0 and result["deleted_probes"] > 0, result
    assert all(result["requests_answered"].get(r, 0) > 0 for r in (0, 1)), result
    assert failures(result) == [], (f"seed {SEED}", result["audit_lines"][:5], result["divergence_lines"][:5],
                                    f"logs in {deployment.data_dir}")
