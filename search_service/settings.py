"""One frozen settings object. `Settings.from_env()` is the only reader of `RAG_*` variables."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from search_service.env_values import RERANKER_NAME
from search_service.errors import ConfigurationError
from search_service.remote.config import EMBED_PROTOCOLS, RERANK_PROTOCOLS, RemoteConfig
from search_service.settings_env import ENVIRONMENT

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
RERANKER_RUNTIMES = ("torch", "onnx", "onnx-int8")  # onnx*: encoder family, CPU (rerankers/runtimes/)
RERANKER_DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of the service. Tests build it directly; processes use `from_env()`."""

    data_dir: Path = Path("./data")
    database_url: str | None = None  # None -> sqlite:///<data_dir>/rag.db
    embedder_model: str = "BAAI/bge-m3"
    # Remote embeddings (docs/scaling.md, "Remote engines"): vectors from an engine's HTTP API
    # instead of a model loaded here; `embedder_model` still names the checkpoint (its tokenizer
    # cuts chunks, collections record it). None: embed in this process.
    embedder_url: str | None = None
    embedder_protocol: str = "openai"  # openai (POST /v1/embeddings) | tei (POST /embed)
    embedder_remote_model: str | None = None  # the `model` sent (openai); None: none is sent
    embedder_timeout_s: float = 30.0  # deadline of one call, retries included
    reranker_model: str | None = "BAAI/bge-reranker-v2-m3"  # None disables reranking
    reranker_family: str | None = None  # None -> detected from the checkpoint's config
    # More rerankers loaded by name, ((name, path_or_id), ...); requests pick one with `model` /
    # `reranker`. The default is `reranker_model` (a name from here, or an id/path loaded under
    # that id), or the first entry when `reranker_model` is None. An entry of RAG_RERANKERS' JSON
    # form with a `remote` object is (name, remote.config.RemoteConfig): scored by an engine over
    # HTTP (rerankers/runtimes/remote.py); local entries stay (name, path_or_id) strings.
    rerankers: tuple[tuple[str, str | RemoteConfig], ...] = ()
    # Names clients send, ((alias, loaded model name), ...), on top of the built-in aliases
    # (Cohere's and Jina's rerank models -> the default reranker, OpenAI's embedding models -> the
    # embedder; `model_names.py`), which `builtin_model_aliases=False` turns off.
    model_aliases: tuple[tuple[str, str], ...] = ()
    builtin_model_aliases: bool = True
    reranker_runtime: str = "torch"  # torch | onnx | onnx-int8, for every loaded reranker
    reranker_dtype: str = "auto"  # auto (float16 on a GPU, float32 on CPU) | float32 | ...
    onnx_cache_dir: Path | None = None  # exported ONNX models; None: ~/.cache/search-service/onnx
    device: str = "auto"
    candidates: int = 50
    top_k: int = 5
    chunk_tokens: int | None = None  # None -> derived from the embedder's max_seq_length
    chunk_overlap: int | None = None
    max_upload_bytes: int = 50 * 1024**2
    embed_batch_size: int = 32
    host: str = "127.0.0.1"
    port: int = 8000
    worker_poll_seconds: float = 1.0
    search_mode: str = "dense"  # dense | sparse | hybrid, when a request names none
    # Reranked searches mix in the first stage's scores with this weight (retrieval/fusion.py,
    # z-scores per query) when a request sends no `rerank_fusion`; 0: the reranker's order alone.
    rerank_fusion_dense_weight: float = 0.0
    # BM25's stemming (retrieval/analyzer.py): auto (by script: Latin words English, Cyrillic
    # Russian, ...), none, or a Snowball language (german, french, ... or de, fr, ...).
    sparse_language: str = "auto"
    rerank_cache_size: int = 10_000  # cached reranker scores (LRU); 0 disables the cache
    rerank_token_cache: int = 2_000_000  # passage token ids kept per encoder reranker; 0: off
    # Tokenizers /v1/search's `context_tokenizer` may name besides the embedder's and the loaded
    # rerankers' (hub ids or local directories); any other name is refused, never loaded.
    context_tokenizers: tuple[str, ...] = ()
    # Dynamic batching (rerankers/batching/scheduler.py): concurrent requests share the reranker's batches.
    batching: str = "on"  # on | off
    batch_max_delay_ms: float = 5.0  # longest a pair waits for batch-mates
    batch_token_budget: int | None = None  # rows x longest row; None: base.default_token_budget
    batch_max_size: int | None = None  # rows per batch; None: 32 CPU, 128 GPU
    # On a GPU, launch the next batch before reading the last one back (scheduler.py, step 5).
    batch_pipeline: str = "on"  # on | off
    rerank_queue_max: int = 2048  # pairs queued per reranker before requests get 429 overloaded
    query_cache_size: int = 1024  # cached query embeddings (LRU); 0 disables the cache
    index_type: str = "auto"  # auto (flat up to index_flat_max, ivf above) | flat | ivf | hnsw
    index_flat_max: int = 100_000
    index_nprobe: int = 256  # IVF lists searched per query (docs/benchmarks.md, FAISS index types)
    index_ef_search: int = 512  # HNSW candidate list per query (at least the k asked for)
    # Where new collections keep their vectors (docs/scaling.md): faiss (in-memory, per process)
    # or pgvector (in PostgreSQL; replicas hold nothing). Recorded per collection.
    vector_backend: str = "faiss"  # faiss | pgvector
    pgvector_type: str = "vector"  # vector (float32) | halfvec (float16 index, half the memory)
    pgvector_hnsw_m: int = 16  # HNSW links per node (index build option)
    pgvector_ef_construction: int = 64  # HNSW build candidate list
    pgvector_ef_search: int = 200  # hnsw.ef_search per query (at least the k asked for)
    pgvector_iterative_scan: str = "relaxed_order"  # off | strict_order | relaxed_order (filters)
    job_lease_seconds: float = 60.0
    job_max_attempts: int = 3
    job_unclaimed_warn_s: float = 30.0  # a pending job unclaimed this long gets a `hint`
    parse_timeout_seconds: float = 60.0
    parse_memory_bytes: int = 2 * 1024**3
    # Operations (README "Running it for real"): auth, limits, rate limits, CORS, logs, shutdown.
    auth: str = "on"  # on | off; off must be explicit
    max_query_chars: int = 8_192  # /v1/search and /v1/rerank query length (at most schemas.MAX_QUERY_CHARS)
    max_rerank_documents: int = 1_000  # documents per /v1/rerank call (at most schemas.MAX_RERANK_DOCUMENTS)
    max_top_k: int = 100  # /v1/search top_k cap (at most schemas.MAX_TOP_K)
    max_candidates: int = 1_000  # /v1/search candidates cap (at most schemas.MAX_CANDIDATES)
    max_embedding_inputs: int = 2_048  # texts per /v1/embeddings call
    rate_limit: tuple[int, float] | None = None  # (requests, per seconds) per key; None: unlimited
    rate_limit_storage: str = "memory"  # memory | redis://host:port/db
    cors_origins: tuple[str, ...] = ()  # allowed browser origins; ("*",) allows any
    log_format: str = "json"  # json | text, for serve and worker
    shutdown_timeout_seconds: float = 30.0  # SIGTERM: how long in-flight requests may finish
    settings_file: Path | None = None  # the file `from_env` read under the environment, if any

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.database_url is None:
            url = f"sqlite:///{(self.data_dir / 'rag.db').resolve()}"
            object.__setattr__(self, "database_url", url)
        if not DEVICE_PATTERN.match(self.device):
            raise ConfigurationError(
                f"RAG_DEVICE must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}"
            )
        if self.search_mode not in ("dense", "sparse", "hybrid"):
            raise ConfigurationError(f"RAG_SEARCH_MODE must be dense, sparse or hybrid, got {self.search_mode!r}")
        self._check_sparse_language()
        if not 0.0 <= self.rerank_fusion_dense_weight <= 1.0:  # also NaN
            raise ConfigurationError(
                f"RAG_RERANK_FUSION_DENSE_WEIGHT must be between 0 and 1, got {self.rerank_fusion_dense_weight!r}"
            )
        if self.index_type not in ("auto", "flat", "ivf", "hnsw"):
            raise ConfigurationError(f"RAG_INDEX_TYPE must be auto, flat, ivf or hnsw, got {self.index_type!r}")
        if self.index_nprobe < 1 or self.index_ef_search < 1:
            raise ConfigurationError("RAG_INDEX_NPROBE and RAG_INDEX_EF_SEARCH must be at least 1")
        self._check_vectors()
        self._check_rerankers()
        self.embedder_remote  # noqa: B018 - checks the RAG_EMBEDDER_* values
        self._check_operations()
        if self.candidates < 1 or self.top_k < 1:
            raise ConfigurationError("RAG_CANDIDATES and RAG_TOP_K must be at least 1")
        if self.top_k > self.candidates:
            raise ConfigurationError(
                f"RAG_TOP_K ({self.top_k}) cannot exceed RAG_CANDIDATES ({self.candidates})"
            )
        self._check_chunking()

    def _check_sparse_language(self) -> None:
        from search_service.retrieval.analyzer import resolve_language

        try:
            object.__setattr__(self, "sparse_language", resolve_language(self.sparse_language))
        except ValueError as exc:
            raise ConfigurationError(f"RAG_SPARSE_LANGUAGE: {exc}") from None

    def _check_chunking(self) -> None:
        from ingestion.chunking import MIN_COLLECTION_CHUNK_TOKENS

        if self.chunk_tokens is not None and self.chunk_tokens < MIN_COLLECTION_CHUNK_TOKENS:
            raise ConfigurationError(f"RAG_CHUNK_TOKENS must be at least {MIN_COLLECTION_CHUNK_TOKENS}")
        if (
            self.chunk_overlap is not None
            and self.chunk_tokens is not None
            and self.chunk_overlap > self.chunk_tokens // 2
        ):
            raise ConfigurationError("RAG_CHUNK_OVERLAP must be at most half of RAG_CHUNK_TOKENS")
        if self.job_unclaimed_warn_s <= 0 or self.job_lease_seconds <= 0:
            raise ConfigurationError("RAG_JOB_UNCLAIMED_WARN_S and RAG_JOB_LEASE_SECONDS must be positive")

    def _check_vectors(self) -> None:
        choices = {
            "RAG_VECTOR_BACKEND": (self.vector_backend, ("faiss", "pgvector")),
            "RAG_PGVECTOR_TYPE": (self.pgvector_type, ("vector", "halfvec")),
            "RAG_PGVECTOR_ITERATIVE_SCAN": (self.pgvector_iterative_scan, ("off", "strict_order", "relaxed_order")),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigurationError(f"{name} must be {', '.join(allowed)}, got {value!r}")
        if not 2 <= self.pgvector_hnsw_m <= 100 or not 4 <= self.pgvector_ef_construction <= 1000:
            raise ConfigurationError("RAG_PGVECTOR_HNSW_M must be 2-100 and RAG_PGVECTOR_EF_CONSTRUCTION 4-1000")
        if not 1 <= self.pgvector_ef_search <= 1000:
            raise ConfigurationError("RAG_PGVECTOR_EF_SEARCH must be 1-1000 (pgvector's limit)")

    def _check_rerankers(self) -> None:
        if self.reranker_runtime not in RERANKER_RUNTIMES:
            raise ConfigurationError(
                f"RAG_RERANKER_RUNTIME must be {', '.join(RERANKER_RUNTIMES)}, "
                f"got {self.reranker_runtime!r}"
            )
        if self.reranker_dtype not in RERANKER_DTYPES:
            raise ConfigurationError(
                f"RAG_RERANKER_DTYPE must be {', '.join(RERANKER_DTYPES)}, "
                f"got {self.reranker_dtype!r}"
            )
        if self.reranker_runtime != "torch" and self.reranker_dtype not in ("auto", "float32"):
            raise ConfigurationError(
                f"RAG_RERANKER_RUNTIME={self.reranker_runtime} runs a float32 checkpoint "
                f"(onnx-int8 quantizes it itself); RAG_RERANKER_DTYPE={self.reranker_dtype} "
                "applies to the torch runtime only"
            )
        object.__setattr__(self, "rerankers", tuple(tuple(entry) for entry in self.rerankers))
        seen: set[str] = set()
        for name, source in self.rerankers:
            if not RERANKER_NAME.match(name):
                raise ConfigurationError(
                    f"RAG_RERANKERS: invalid reranker name {name!r} (letters, digits and . _ : / "
                    "@ + -, starting with a letter or digit, at most 128 characters)"
                )
            if name in seen:
                raise ConfigurationError(f"RAG_RERANKERS names {name!r} twice")
            if isinstance(source, RemoteConfig):
                source.check(f"RAG_RERANKERS ({name})", RERANK_PROTOCOLS)
            elif not isinstance(source, str) or not source:
                raise ConfigurationError(f"RAG_RERANKERS: {name!r} has no path or id")
            seen.add(name)
        object.__setattr__(self, "model_aliases", tuple(tuple(entry) for entry in self.model_aliases))
        for alias, target in self.model_aliases:
            if not RERANKER_NAME.match(alias) or not target:
                raise ConfigurationError(
                    f"RAG_MODEL_ALIASES: invalid alias {alias!r}={target!r} (names: letters, digits "
                    "and . _ : / @ + -, starting with a letter or digit, at most 128 characters)"
                )

    def _check_operations(self) -> None:
        from search_service.api import schemas

        if self.auth not in ("on", "off"):
            raise ConfigurationError(f"RAG_AUTH must be on or off, got {self.auth!r}")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        object.__setattr__(self, "context_tokenizers", tuple(self.context_tokenizers))
        caps = {
            "RAG_MAX_QUERY_CHARS": (self.max_query_chars, schemas.MAX_QUERY_CHARS),
            "RAG_MAX_RERANK_DOCUMENTS": (self.max_rerank_documents, schemas.MAX_RERANK_DOCUMENTS),
            "RAG_MAX_TOP_K": (self.max_top_k, schemas.MAX_TOP_K),
            "RAG_MAX_CANDIDATES": (self.max_candidates, schemas.MAX_CANDIDATES),
            "RAG_MAX_EMBEDDING_INPUTS": (self.max_embedding_inputs, 100_000),
        }
        for name, (value, ceiling) in caps.items():
            if not 1 <= value <= ceiling:
                raise ConfigurationError(f"{name} must be between 1 and {ceiling}, got {value}")
        if self.top_k > self.max_top_k or self.candidates > self.max_candidates:
            raise ConfigurationError("RAG_TOP_K / RAG_CANDIDATES cannot exceed RAG_MAX_TOP_K / RAG_MAX_CANDIDATES")
        storage = self.rate_limit_storage
        if storage != "memory" and not storage.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(f"RAG_RATE_LIMIT_STORAGE must be memory or a redis:// URL, got {storage!r}")
        for name, value in (("RAG_BATCHING", self.batching),
                            ("RAG_BATCH_PIPELINE", self.batch_pipeline)):
            if value not in ("on", "off"):
                raise ConfigurationError(f"{name} must be on or off, got {value!r}")
        if not 0 <= self.batch_max_delay_ms <= 1000:
            raise ConfigurationError(
                f"RAG_BATCH_MAX_DELAY_MS must be between 0 and 1000, got {self.batch_max_delay_ms}"
            )
        for name, value in (("RAG_BATCH_TOKEN_BUDGET", self.batch_token_budget),
                            ("RAG_BATCH_MAX_SIZE", self.batch_max_size),
                            ("RAG_RERANK_QUEUE_MAX", self.rerank_queue_max)):
            if value is not None and value < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {value}")
        if self.log_format not in ("json", "text"):
            raise ConfigurationError(f"RAG_LOG_FORMAT must be json or text, got {self.log_format!r}")

    @property
    def embedder_remote(self) -> RemoteConfig | None:
        """The remote embedding engine (RAG_EMBEDDER_URL and friends), or None."""
        if not self.embedder_url:
            return None
        return RemoteConfig(
            protocol=self.embedder_protocol, url=self.embedder_url, model=self.embedder_remote_model,
            timeout_s=self.embedder_timeout_s,
        ).check("RAG_EMBEDDER_URL / RAG_EMBEDDER_PROTOCOL / RAG_EMBEDDER_TIMEOUT_S", EMBED_PROTOCOLS)

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "on"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"

    def replace(self, **changes) -> Settings:
        """A copy with `changes` applied; `None` values are ignored (unset CLI options)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Options (`overrides`) > environment > settings file (settings_file.py) > defaults."""
        from search_service.settings_file import read_settings_file, settings_file_path

        env = os.environ if environ is None else environ
        path = settings_file_path(env, process=environ is None)
        if path is not None:
            env = {**read_settings_file(path, ENVIRONMENT), **env}
        values: dict = {"settings_file": path}
        for name, (attr, parse) in ENVIRONMENT.items():
            if name in env:
                parsed = parse(name, env[name])
                if isinstance(attr, tuple):  # one variable, several settings
                    values.update(zip(attr, parsed, strict=True))
                else:
                    values[attr] = parsed
        # Only named rerankers configured: the first is the default, bge-reranker-v2-m3 is not
        # loaded on top of them.
        if values.get("rerankers") and "RAG_RERANKER_MODEL" not in env:
            values["reranker_model"] = None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
