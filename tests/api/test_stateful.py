"""A hypothesis state machine drives a live `serve` and a live `worker` over HTTP, with faults.

Rules are the operations clients run (create and delete collections; upload as JSON, as a file and
as `.jsonl`; replace; delete documents; read) and two faults (SIGKILL the worker and restart it;
delete a collection while its job runs). `scripts/driver.py`'s `Driver` checks each answer and keeps
the plain Python model; after each drain it checks that every document the model holds is listed,
fetchable with its latest text and found by a search for a token unique to it, that nothing deleted
or replaced comes back in any list, fetch or search, that job states agree, and that the worker is
alive. One deployment per database; each example works on its own collection names.

A failure prints the seed: RAG_STATEFUL_SEED=N reruns the same examples.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from scripts.driver import DOCUMENT_IDS, Driver
from scripts.live import Client, Deployment

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("RAG_STATEFUL_SEED") or random.SystemRandom().randrange(2**31))
EXAMPLES = int(os.environ.get("RAG_STATEFUL_EXAMPLES", "6"))  # steps are cheap; starting the processes is not
STEPS = int(os.environ.get("RAG_STATEFUL_STEPS", "16"))
MIN_STEPS = min(STEPS, 10)  # hypothesis starts with short runs; a few examples must still do something
SHRINK = os.environ.get("RAG_STATEFUL_SHRINK") == "1"  # minutes on live processes; the steps print anyway
COLLECTIONS = 2

OPERATIONS: Counter = Counter()  # rules run, printed with the seed
collection = st.integers(0, COLLECTIONS - 1)
document = st.sampled_from(DOCUMENT_IDS)
documents = st.lists(document, min_size=1, max_size=3, unique=True)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def deployment(request, tmp_path_factory, minilm_path):
    from tests.conftest import _postgres_database

    data = tmp_path_factory.mktemp(f"stateful-{request.param}")
    databases = _postgres_database() if request.param == "postgres" else _sqlite(data)
    url = next(databases)
    try:
        with Deployment(data / "data", url, minilm_path) as running:
            yield running
    finally:
        databases.close()


def _sqlite(data):
    yield f"sqlite:///{data / 'rag.db'}"


class ServiceMachine(RuleBasedStateMachine):
    deployment: Deployment
    examples = 0

    def __init__(self):
        super().__init__()
        ServiceMachine.examples += 1
        self.driver: Driver | None = None
        self.broken = False
        self.kills = 0
        self.mid_job = 0

    @initialize(text_seed=st.integers(0, 2**32 - 1))
    def start(self, text_seed):
        prefix = f"sm{SEED % 10**5}x{ServiceMachine.examples}"
        self.driver = Driver(Client(self.deployment.base_url), random.Random(text_seed), prefix, self.deployment,
                             collections=COLLECTIONS, drain_timeout=150)
        for name in self.driver.names[:1]:
            self.driver.create_collection(name)

    def do(self, operation, *args):
        """Run one driver operation; `broken` stays set if it raised, so the teardown's own check
        does not replace the rule's exception."""
        OPERATIONS[operation.__name__] += 1
        self.broken = True
        operation(*args)
        self.broken = False

    def name(self, index: int) -> str:
        return self.driver.names[index]

    @rule(c=collection)
    def create_collection(self, c):
        self.do(self.driver.create_collection, self.name(c))

    @rule(c=collection, ids=documents)
    def upload_json(self, c, ids):
        self.do(self.driver.upload_json, self.name(c), ids)

    @rule(c=collection, doc=document)
    def upload_file(self, c, doc):
        self.do(self.driver.upload_file, self.name(c), doc)

    @rule(c=collection, ids=documents)
    def upload_jsonl(self, c, ids):
        self.do(self.driver.upload_jsonl, self.name(c), ids)

    @rule(c=collection, doc=document, victim=document)
    def upload_json_lookalike(self, c, doc, victim):
        self.do(self.driver.upload_json_lookalike, self.name(c), doc, victim)

    @rule(c=collection, doc=document)
    def delete_document(self, c, doc):
        self.do(self.driver.delete_document, self.name(c), doc)

    @rule(c=collection)
    def delete_collection(self, c):
        self.do(self.driver.delete_collection, self.name(c))

    @rule(c=collection)
    def read(self, c):
        self.do(self.driver.read, self.name(c))

    @precondition(lambda self: self.kills < 1)
    @rule(pause=st.sampled_from([0.0, 0.2, 0.5]))
    def kill_worker(self, pause):
        time.sleep(pause)  # a moment for the worker to pick something up
        self.kills += 1
        self.do(self.driver.kill_worker)

    @precondition(lambda self: self.mid_job < 1)
    @rule(c=collection)
    def delete_collection_while_its_job_runs(self, c):
        self.mid_job += 1
        self.do(self.driver.delete_collection_mid_job, self.name(c))

    @rule()
    def drain_and_check(self):
        self.do(self.driver.drain)
        self.do(self.driver.check)

    @invariant()
    def no_divergence(self):
        if self.driver is not None:
            self.broken = bool(self.driver.divergences)
            assert not self.driver.divergences, self.driver.divergences

    def teardown(self):
        if self.driver is not None and not self.broken:
            self.drain_and_check()
            self.no_divergence()


def test_nothing_is_lost(deployment):
    """Random operations and faults against live processes; the model and the service agree."""
    ServiceMachine.deployment = deployment
    started, before = time.time(), ServiceMachine.examples
    OPERATIONS.clear()

    @seed(SEED)
    def factory():
        return ServiceMachine()

    try:
        run_state_machine_as_test(factory, settings=settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
            phases=[Phase.generate, Phase.shrink] if SHRINK else [Phase.generate], suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        ), _min_steps=MIN_STEPS)
    except BaseException as exc:
        exc.add_note(f"reproduce with RAG_STATEFUL_SEED={SEED} (examples {EXAMPLES}, steps {STEPS}); "
                     f"logs in {deployment.data_dir}")
        print(f"stateful test failed: RAG_STATEFUL_SEED={SEED}")
        raise
    assert deployment.worker_deaths == [], deployment.log("worker")[-3000:]
    assert sum(OPERATIONS.values()) >= EXAMPLES * MIN_STEPS  # the runs really ran
    uploads = sum(OPERATIONS[op] for op in ("upload_json", "upload_file", "upload_jsonl", "upload_json_lookalike"))
    assert uploads >= EXAMPLES and OPERATIONS["delete_document"] + OPERATIONS["delete_collection"] > 0, OPERATIONS
    print(f"stateful: {ServiceMachine.examples - before} runs (seed {SEED}) in {time.time() - started:.1f} s, "
          f"worker starts {deployment.worker_starts}, operations {dict(OPERATIONS)}")
