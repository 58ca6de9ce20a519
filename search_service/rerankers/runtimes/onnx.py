"""The encoder family's forward pass in ONNX Runtime on CPU: `RAG_RERANKER_RUNTIME=onnx|onnx-int8`.

`OnnxEncoderReranker` is an `EncoderReranker` whose `forward` runs an ORT session, so
tokenization (FlagEmbedding's pair building), collation, length batching and ranking stay the
encoder family's. The checkpoint is exported once (`onnx_export.py`: TorchScript export with eager
attention, ORT's BERT fusions, and for onnx-int8 dynamic int8 quantization of the fused graph) and
cached on disk (`RAG_ONNX_CACHE_DIR`, default ~/.cache/search-service/onnx), keyed by the
checkpoint's weights and config, the runtime and the versions of torch, transformers and
onnxruntime. The session itself runs with ORT_ENABLE_ALL.

A cache hit loads only the tokenizer and config: the torch weights are never read. Entries are
built in a temporary folder under a file lock and renamed into place, so readers only ever see
whole entries and concurrent workers export once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from search_service.devices import resolve_device, resolve_dtype
from search_service.errors import ConfigurationError, ModelLoadError
from search_service.rerankers.base import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, Reranker
from search_service.rerankers.checkpoint import Checkpoint, load_transformers_model
from search_service.rerankers.families.encoder import EncoderReranker
from search_service.rerankers.runtimes.onnx_export import OPSET, export, quantize
from search_service.rerankers.runtimes.registry import Runtime

log = logging.getLogger(__name__)

RECIPE_VERSION = 2  # bump when the export recipe changes: older cache entries are then unused (2: per-channel int8)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "search-service" / "onnx"


class OnnxRuntime(Runtime):
    """The encoder family's forward in an ONNX Runtime CPU session, exported in float32."""

    name = "onnx"
    families = frozenset({"encoder"})

    def place(self, family: type[Reranker], device: Any, dtype: Any) -> tuple[str, torch.dtype]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise ConfigurationError(
                f"the {self.name} reranker runtime needs ONNX Runtime: "
                "pip install 'search-service[onnx]'"
            ) from error
        if device not in (None, "auto") and resolve_device(device) != "cpu":
            raise ConfigurationError(
                f"the {self.name} reranker runtime runs on CPU, not {device!r}: set "
                "RAG_DEVICE=cpu or RAG_RERANKER_RUNTIME=torch"
            )
        if dtype not in (None, "auto") and resolve_dtype(dtype, "cpu") != torch.float32:
            raise ConfigurationError(
                f"the {self.name} reranker runtime takes a float32 checkpoint (onnx-int8 "
                f"quantizes it itself), not dtype {dtype!r}: leave RAG_RERANKER_DTYPE unset"
            )
        return "cpu", torch.float32

    def build(self, family, checkpoint, *, device, dtype, **options):
        return OnnxEncoderReranker.load(
            checkpoint, runtime=self.name, cache_dir=self.cache_dir, **options
        )


class OnnxInt8Runtime(OnnxRuntime):
    """The same with int8 weights (dynamic quantization): faster, scores drift slightly."""

    name = "onnx-int8"


class OnnxEncoderReranker(EncoderReranker):
    """An encoder reranker whose forward runs in an ONNX Runtime CPU session."""

    def __init__(self, *, model_path: Path, runtime: str, threads: int | None = None, **kwargs):
        super().__init__(model=None, device="cpu", dtype=torch.float32, **kwargs)
        self.runtime = runtime
        self.model_path = Path(model_path)
        self.threads = threads
        self._session = open_session(self.model_path, threads)
        self._input_names = {node.name for node in self._session.get_inputs()}

    @classmethod
    def load(
        cls,
        checkpoint: Checkpoint,
        *,
        runtime: str = "onnx",
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        query_max_length: int | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,  # ignored: the export always uses eager attention
    ) -> OnnxEncoderReranker:
        """Export (once) and open `checkpoint` for `runtime`; built by `OnnxRuntime.build`."""
        from transformers import AutoConfig, AutoTokenizer

        source = checkpoint.name_or_path
        options = dict(checkpoint.hub_options, trust_remote_code=trust_remote_code)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **options)
            config = AutoConfig.from_pretrained(source, **options)
        except Exception as error:
            raise ModelLoadError(f"cannot load reranker {source!r}: {error}") from error
        if getattr(config, "num_labels", 1) != 1:
            raise ModelLoadError(
                f"reranker {source!r} has {config.num_labels} labels; the encoder family needs a "
                "one-label relevance head"
            )
        uses_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        entry = cached_model(checkpoint, runtime, root, config, uses_types, trust_remote_code)
        log.info(
            "loaded encoder reranker %s with ONNX Runtime (%s) from %s", source, runtime, entry
        )
        return cls(
            model_path=entry / "model.onnx",
            runtime=runtime,
            threads=threads,
            tokenizer=tokenizer,
            config=config,
            name=source,
            max_length=max_length,
            batch_size=batch_size,
            query_max_length=query_max_length,
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: tensor.numpy() for name, tensor in batch.items() if name in self._input_names}
        (logits,) = self._session.run(["logits"], feed)
        return torch.from_numpy(logits)

    def __copy__(self) -> OnnxEncoderReranker:
        # A shallow copy (`with_scheduler`) shares the session; only a deep copy or a pickle
        # (`__getstate__`) opens another, which would hold the weights a second time.
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        del state["_session"]  # not picklable: a copy opens its own on the same file
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._session = open_session(self.model_path, self.threads)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, runtime={self.runtime!r})"


def open_session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # As many threads as torch would use (OMP_NUM_THREADS, torch.set_num_threads), so switching
    # runtimes never changes how much of the machine a reranker takes.
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT's optimizer notes are not for operators
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# -- the on-disk cache ----------------------------------------------------------------------------


def checkpoint_fingerprint(checkpoint: Checkpoint) -> dict[str, Any]:
    """What identifies the weights: each weight file's path, size and mtime for a local folder;
    the snapshot (commit) for a hub id, plus the config in both cases."""
    fingerprint: dict[str, Any] = {"config": checkpoint.config}
    local = Path(checkpoint.name_or_path).expanduser()
    if local.is_dir():
        fingerprint["path"] = str(local.resolve())
        fingerprint["files"] = sorted(
            (item.name, item.stat().st_size, item.stat().st_mtime_ns)
            for item in local.iterdir()
            if item.name.endswith(WEIGHT_SUFFIXES) or item.name == "config.json"
        )
        return fingerprint
    from huggingface_hub import try_to_load_from_cache

    options = checkpoint.hub_options
    cached = try_to_load_from_cache(
        checkpoint.name_or_path,
        "config.json",
        cache_dir=options.get("cache_dir"),
        revision=options.get("revision"),
    )
    fingerprint["hub"] = checkpoint.name_or_path
    # .../snapshots/<commit>/config.json: the commit pins every file of the snapshot.
    fingerprint["snapshot"] = Path(cached).parent.name if isinstance(cached, str) else None
    fingerprint["revision"] = options.get("revision")
    return fingerprint


def cache_key(checkpoint: Checkpoint, runtime: str) -> str:
    import onnxruntime
    import transformers

    material = {
        "recipe": RECIPE_VERSION,
        "runtime": runtime,
        "opset": OPSET,
        "checkpoint": checkpoint_fingerprint(checkpoint),
        "versions": [torch.__version__, transformers.__version__, onnxruntime.__version__],
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(checkpoint.name_or_path).name)[-48:]
    return f"{slug}-{runtime}-{digest[:16]}"


def cached_model(
    checkpoint: Checkpoint,
    runtime: str,
    root: Path,
    config: Any,
    uses_types: bool,
    trust_remote_code: bool,
) -> Path:
    """The cache entry (a folder holding model.onnx) for `runtime`, built if it is missing."""
    if runtime == "onnx-int8":
        fp32 = cached_model(checkpoint, "onnx", root, config, uses_types, trust_remote_code)
        return _entry(root, cache_key(checkpoint, runtime), lambda out: quantize(fp32, out))

    def build(out: Path) -> dict[str, Any]:
        _, model = load_transformers_model(
            _sequence_classifier(),
            checkpoint,
            "cpu",
            torch.float32,
            trust_remote_code=trust_remote_code,
            attn_implementation="eager",  # the attention pattern ORT's BERT optimizer fuses
        )
        try:
            return export(model, config, uses_types, out)
        except Exception as error:
            raise ModelLoadError(
                f"cannot export reranker {checkpoint.name_or_path!r} to ONNX: {error}"
            ) from error

    return _entry(root, cache_key(checkpoint, runtime), build)


def _sequence_classifier() -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


def _entry(root: Path, key: str, build: Any) -> Path:
    from filelock import FileLock

    final = root / key
    if (final / "meta.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock")):
        if (final / "meta.json").is_file():  # another process built it while we waited
            return final
        for stale in root.glob(f".building-{key}-*"):  # left by a process that died building
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        building = Path(tempfile.mkdtemp(prefix=f".building-{key}-", dir=root))
        try:
            started = time.perf_counter()
            log.info("building the ONNX model %s (once)", final)
            meta = build(building)
            meta["build_seconds"] = round(time.perf_counter() - started, 1)
            (building / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            os.rename(building, final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return final
