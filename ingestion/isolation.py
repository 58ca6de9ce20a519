"""Parse untrusted uploads in a child process with a memory limit and a wall-clock timeout.

`parse_isolated(data, ...)` runs `ingestion.parsers.parse_many` in a fresh interpreter
(`python -m ingestion.isolation`): it imports only the parsers (no torch, no transformers, no
server state), so it starts in about 0.1 s plus the format's library. The child sets
`RLIMIT_AS` to `memory_bytes` (and `RLIMIT_CPU` a little past the timeout, in case the parent
dies) before it reads the upload from stdin; it writes the documents, or the `ParseError`, as
JSON on stdout. JSON rather than pickle: a child that a hostile file took over must not be able
to run code in the parent. Failures become `ParseError`s with readable reasons:

- `parse_timeout` (HTTP 422): "parsing took longer than 30 s"; the child is killed;
- `parse_out_of_memory` (422): "parsing needed more than 1 GiB of memory";
- `parse_crashed` (422): the child died from a signal (e.g. a segfault in a C library);
- `parse_failed` (422): an unexpected exception in a parser (its traceback is logged here);
- a `ParseError` raised in the child is raised again with its code, status and message.

A subprocess rather than multiprocessing: `spawn` and `forkserver` children import the parent's
`__main__` (the CLI, and with it the models' libraries), and `fork` would copy a process that
holds torch threads.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from ingestion.parsers import ParsedDocument, ParseError, Section, UnsupportedFormatError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY_BYTES = 1 << 30
_EXIT_OUT_OF_MEMORY = 86
_STDERR_LOG_CHARS = 4000
_NO_MEMORY_SIGNS = ("failed to map segment", "Cannot allocate memory")
_ROOT = str(Path(__file__).resolve().parent.parent)  # the directory holding `ingestion/`


def parse_isolated(
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> list[ParsedDocument]:
    """`parse_many(data, filename=, content_type=)` in a child limited in time and memory."""
    header = json.dumps({"filename": filename, "content_type": content_type}).encode() + b"\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-P", "-m", "ingestion.isolation", str(int(memory_bytes)),
               str(int(timeout_s) + 2)]
    began = time.monotonic()
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env, close_fds=True) as process:
        try:
            left = timeout_s - (time.monotonic() - began)  # starting the child counts too
            out, err = process.communicate(header + data, timeout=max(left, 0.0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise _timeout(timeout_s) from None
        except BaseException:
            process.kill()
            raise
    elapsed = time.monotonic() - began
    if err:
        log.debug("parser child (%s) wrote to stderr: %s", filename, err[-_STDERR_LOG_CHARS:])
    return _result(process.returncode, out, err, timeout_s, memory_bytes, elapsed)


def _result(code: int, out: bytes, err: bytes, timeout_s: float, memory_bytes: int,
            elapsed: float) -> list[ParsedDocument]:
    if code == _EXIT_OUT_OF_MEMORY:
        raise ParseError(f"parsing needed more than {_size(memory_bytes)} of memory",
                         code="parse_out_of_memory")
    if code == -signal.SIGXCPU:
        raise _timeout(timeout_s)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        raise ParseError(f"the parser crashed (killed by signal {name}) after {elapsed:.1f} s",
                         code="parse_crashed")
    if code != 0:
        log.error("parser child failed with exit status %d: %s", code,
                  err[-_STDERR_LOG_CHARS:].decode("utf-8", "replace"))
        last = err.decode("utf-8", "replace").strip().rsplit("\n", 1)[-1].split(":", 1)[0][:80]
        raise ParseError(f"the parser failed on this document ({last or f'exit status {code}'})",
                         code="parse_failed")
    try:
        payload = json.loads(out.decode("utf-8", "surrogatepass"))
    except ValueError:
        raise ParseError("the parser ended without a result", code="parse_failed") from None
    if "error" in payload:
        raise _error_from_json(payload["error"])
    return [_document_from_json(doc) for doc in payload["documents"]]


def _timeout(timeout_s: float) -> ParseError:
    return ParseError(f"parsing took longer than {timeout_s:g} s", code="parse_timeout")


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"


# --- the JSON protocol ----------------------------------------------------------------------


def _document_to_json(doc: ParsedDocument) -> dict:
    return {
        "text": doc.text, "format": doc.format, "title": doc.title,
        "sections": [[s.start, s.end, list(s.heading_path), s.page] for s in doc.sections],
        "external_id": doc.external_id, "metadata": doc.metadata,
    }


def _document_from_json(item: dict) -> ParsedDocument:
    return ParsedDocument(
        text=item["text"], format=item["format"], title=item["title"],
        sections=[Section(start, end, tuple(path), page)
                  for start, end, path, page in item["sections"]],
        external_id=item["external_id"], metadata=item["metadata"],
    )


def _error_to_json(exc: ParseError) -> dict:
    return {"message": exc.message, "code": exc.code, "status": exc.status,
            "detected": getattr(exc, "detected", None)}


def _error_from_json(item: dict) -> ParseError:
    if item.get("detected") is not None and item["code"] == UnsupportedFormatError.code:
        return UnsupportedFormatError(item["detected"])
    return ParseError(item["message"], code=item["code"], status=item["status"])


# --- the child ------------------------------------------------------------------------------


def _child(memory_bytes: int, cpu_seconds: int) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    try:
        from ingestion.parsers import parse_many

        stdin = sys.stdin.buffer
        header = json.loads(stdin.readline())
        data = stdin.read()
        try:
            docs = parse_many(data, filename=header["filename"],
                              content_type=header["content_type"])
            payload = {"documents": [_document_to_json(doc) for doc in docs]}
        except ParseError as exc:
            payload = {"error": _error_to_json(exc)}
        del data
        out = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
        del payload
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
    except MemoryError:
        os._exit(_EXIT_OUT_OF_MEMORY)  # no cleanup: it could need memory too
    except (ImportError, OSError) as exc:
        # Under RLIMIT_AS, loading a library's shared object fails with ENOMEM, as an ImportError.
        if getattr(exc, "errno", None) == errno.ENOMEM or any(
            sign in str(exc) for sign in _NO_MEMORY_SIGNS
        ):
            os._exit(_EXIT_OUT_OF_MEMORY)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1]), int(sys.argv[2])))
