"""Queries running while a document is replaced never see chunks of both versions."""

import re
import threading

from ingestion.pipeline import SourceDocument


def version_text(tag: str) -> str:
    paragraphs = [f"Version {tag}: the lighthouse keeper logged storm number {i} in the harbour." for i in range(8)]
    return "\n\n".join(" ".join([p] * 6) for p in paragraphs)


def test_replacement_is_atomic_for_concurrent_queries(migrated_url, make_services):
    services = make_services(migrated_url, chunk_tokens=48, chunk_overlap=8)
    services.ingestion.ingest("docs", [SourceDocument(external_id="log", text=version_text("A"))])
    services.ingestion.ingest("docs", [SourceDocument(external_id="other", text="Unrelated text about baking bread.")])
    stop = threading.Event()
    mixes: list[set] = []
    seen: set = set()
    errors: list[BaseException] = []

    def writer():
        try:
            for i in range(6):
                tag = "B" if i % 2 == 0 else "A"
                services.ingestion.ingest("docs", [SourceDocument(external_id="log", text=version_text(tag))])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            stop.set()

    def reader():
        try:
            while not stop.is_set():
                response = services.search.search("docs", "lighthouse keeper storm", top_k=50, candidates=50, rerank=False)
                texts = [r["text"] for r in response["results"] if r["document_id"] == "log"]
                versions = {tag for text in texts for tag in re.findall(r"Version ([AB])", text)}
                seen.update(versions)
                if len(versions) > 1:
                    mixes.append(versions)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert mixes == []
    assert seen == {"A", "B"}  # the readers did observe both versions over time
