"""Every timestamp the API and the CLI show is ISO 8601 with its UTC offset, on both databases."""

from datetime import datetime, timedelta

from ingestion.worker import Worker
from search_service.store import keys as key_store


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    assert abs(datetime.now(parsed.tzinfo) - parsed) < timedelta(minutes=5), value
    return parsed


def test_timestamps_carry_their_offset(migrated_url, app_factory):
    app = app_factory(migrated_url)
    client = app.test_client()
    services = app.extensions["search_service"]
    assert client.post("/v1/collections", json={"name": "times"}).status_code == 201
    job_id = client.post("/v1/collections/times/documents",
                         json={"documents": [{"id": "a", "text": "A short note about clocks."}]}).get_json()["job_id"]
    Worker(services.database, services.ingestion, poll_seconds=0.01).run_once()

    collection = client.get("/v1/collections/times").get_json()
    document = client.get("/v1/collections/times/documents/a").get_json()
    job = client.get(f"/v1/jobs/{job_id}").get_json()
    listed = client.get("/v1/collections/times/jobs").get_json()
    values = [collection["created_at"], document["created_at"], document["updated_at"],
              job["created_at"], job["started_at"], job["finished_at"]]
    values += [row["created_at"] for row in listed["jobs"]]
    for value in values:
        _aware(value)
    assert _aware(job["started_at"]) <= _aware(job["finished_at"])

    with services.database.session() as session:
        key_store.create_key(session, name="clock", role="read", collections=["times"])
    with services.database.session() as session:
        (row,) = key_store.list_keys(session)
        shown = key_store.key_to_dict(row)  # what `search-service keys list` prints
    _aware(shown["created_at"])
