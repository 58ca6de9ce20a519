import pytest


@pytest.fixture
def client(migrated_url, app_factory):
    return app_factory(migrated_url).test_client()


def test_create_list_show(client):
    response = client.post("/v1/collections", json={"name": "notes", "chunk_tokens": 100, "chunk_overlap": 10})
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/v1/collections/notes")
    created = response.get_json()
    assert (created["chunk_tokens"], created["chunk_overlap"], created["dimension"]) == (100, 10, 384)
    client.post("/v1/collections", json={"name": "defaults"})
    names = [c["name"] for c in client.get("/v1/collections").get_json()["collections"]]
    assert names == ["defaults", "notes"]
    shown = client.get("/v1/collections/defaults").get_json()
    assert shown["chunk_tokens"] == 254 and shown["documents"] == 0


def test_duplicate_is_409(client):
    client.post("/v1/collections", json={"name": "notes"})
    response = client.post("/v1/collections", json={"name": "notes"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "collection_exists"


def test_chunk_size_beyond_the_embedder_is_refused(client):
    response = client.post("/v1/collections", json={"name": "big", "chunk_tokens": 1000})
    assert response.status_code == 400
    assert "254" in response.get_json()["error"]["message"]
