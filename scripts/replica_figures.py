"""The replicas run's figures (scripts/replicas.py): gathered from the client threads, the
pass/fail verdict, and the table that goes in docs/scaling.md."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scripts.replicas import ReplicaDriver


def figures(drivers: list[ReplicaDriver], counts: Counter, seconds: float) -> dict:
    total = sum((d.figures for d in drivers), Counter()) + counts
    answered = sum((d.client.answered() for d in drivers), Counter())
    errors = sum((d.client.server_errors_by_replica() for d in drivers), Counter())
    unanswered = sum((d.client.connection_errors for d in drivers), Counter())
    searches = [x for d in drivers for x in d.client.latencies.get("POST /v1/search", [])]
    uploads = [x for d in drivers for x in d.client.latencies.get("POST /v1/collections/{name}/documents", [])]
    return {
        "seconds": round(seconds), "operations": sum(d.steps for d in drivers),
        "requests_answered": dict(sorted(answered.items())), "server_errors": dict(sorted(errors.items())),
        "connection_errors": dict(sorted(unanswered.items())),
        "divergence_lines": [line for d in drivers for line in d.divergences],
        "audit_lines": [line for d in drivers for line in d.audit_notes],
        "search_p50_ms": _ms(searches, 0.5), "search_p95_ms": _ms(searches, 0.95),
        "upload_p50_ms": _ms(uploads, 0.5), "upload_p95_ms": _ms(uploads, 0.95),
        **{key: total[key] for key in FIGURES},
    }


FIGURES = ("load_seconds", "replica_start_seconds", "replica_kills", "worker_kills", "uploads_acknowledged", "documents_acknowledged",
           "deletes_acknowledged", "writes_unanswered", "unanswered_uploads_committed", "reads_unanswered",
           "documents_audited", "lost", "deleted_probes", "returned", "queries_compared", "divergent")


def _ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


def summary_line(drivers: list[ReplicaDriver], counts: Counter) -> str:
    total = sum((d.figures for d in drivers), Counter())
    return (f"{total['uploads_acknowledged']} uploads, {total['deletes_acknowledged']} deletes, "
            f"lost {counts['lost']}, returned {counts['returned']}, divergent {counts['divergent']}"
            f"/{counts['queries_compared']}, 5xx {sum(len(d.client.server_errors) for d in drivers)}, "
            f"other divergences {sum(len(d.divergences) for d in drivers)}")


def failures(result: dict) -> list[str]:
    bad = [f"{key} {result[key]}" for key in ("lost", "returned", "divergent") if result[key]]
    if any(result["server_errors"].values()):
        bad.append(f"5xx {result['server_errors']}")
    if result["divergence_lines"]:
        bad.append(f"{len(result['divergence_lines'])} other divergences")
    return bad


def table(result: dict, replicas: int) -> str:
    rows = [
        ("seconds under load / in all (drains and audits included)", f"{result['load_seconds']} / {result['seconds']}"),
        ("operations (client threads' steps; the checks' requests not counted)", result["operations"]),
        ("replica kills / worker kills (SIGKILL, then restarted)", f"{result['replica_kills']} / {result['worker_kills']}"),
        ("killed replica back in rotation after (mean s from restart to ready)",
         round(result["replica_start_seconds"] / max(1, result["replica_kills"]))),
        ("uploads acknowledged (202) / their documents", f"{result['uploads_acknowledged']} / {result['documents_acknowledged']}"),
        ("acknowledged uploads lost", result["lost"]),
        ("deletes acknowledged (204)", result["deletes_acknowledged"]),
        ("deleted or replaced documents returned (list, fetch, search)", result["returned"]),
        ("queries compared across replicas after the drain / divergent", f"{result['queries_compared']} / {result['divergent']}"),
        ("documents audited on every replica / deleted-version probes", f"{result['documents_audited']} / {result['deleted_probes']}"),
        *((f"replica {r}: requests answered / 5xx / connection errors",
           f"{result['requests_answered'].get(r, 0)} / {result['server_errors'].get(r, 0)} / {result['connection_errors'].get(r, 0)}")
          for r in range(replicas)),
        ("unanswered writes (committed, read back) / unanswered reads",
         f"{result['writes_unanswered']} ({result['unanswered_uploads_committed']} uploads committed) / {result['reads_unanswered']}"),
        ("other divergences (driver checks)", len(result["divergence_lines"])),
        ("search p50 / p95 ms", f"{result['search_p50_ms']} / {result['search_p95_ms']}"),
        ("upload p50 / p95 ms", f"{result['upload_p50_ms']} / {result['upload_p95_ms']}"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"| {'-' * width} | --- |"]
    return "\n".join([*lines, *(f"| {label.ljust(width)} | {value} |" for label, value in rows)])
