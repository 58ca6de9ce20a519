#!/usr/bin/env bash
# The GPU benchmarks of issue #7, in one command, for a machine with one CUDA GPU (10 minutes at most).
#
#   bash benchmarks/gpu.sh                     # from the repository root; results in $OUT
#   WHEELS=.whl bash benchmarks/gpu.sh         # an offline machine: wheels from gpu_wheels.sh
#
# Three steps, each under its own time limit, each run even when an earlier one failed:
#   1. families.py: every reranker family at its published size (random weights), ours and
#      sentence-transformers' CrossEncoder on the encoder (STEP1_S, default 270 s);
#   2. rerank.py: the encoder (XLM-R large, the size of bge-reranker-v2-m3) in float16, ours vs
#      FlagEmbedding (in its own transformers-4.46 environment) vs CrossEncoder, on the same mixed-
#      length pairs (STEP2_S, default 150 s);
#   3. concurrency.py: 16 clients against `serve`, dynamic batching off, on, and on without the
#      GPU pipeline (`on-serial`, RAG_BATCH_PIPELINE=off) (STEP3_S, 180 s).
# Needs python3 with torch (CUDA), transformers 5, tokenizers, safetensors, filelock,
# sentence-transformers and the project's dependencies; nothing is downloaded. With WHEELS=dir,
# dir/app/*.whl (the project's dependencies missing there) are installed into a target folder on
# PYTHONPATH, and dir/flag/*.whl (FlagEmbedding 1.4.2, transformers 4.46, ...) into a second one
# that the FlagEmbedding worker alone sees. Without FlagEmbedding, step 2 runs ours and CrossEncoder.
# Knobs: STEPS (default families,rerank,concurrency), QUERIES, ROUNDS, FAMILIES, MODES
# (concurrency.py's --modes), SECONDS_PER_MODE, STEP<n>_S.
# Writes $OUT/{families,rerank,concurrency}.{json,log}. Exit status: the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/search-service-gpu}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export RAG_BENCH_CACHE="${RAG_BENCH_CACHE:-/tmp/search-service-bench}"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

install_wheels() {  # install_wheels <folder of wheels> <target>
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$2" "$1"/*.whl
}
ENGINES=ours,st
if [ -n "${WHEELS:-}" ]; then
  if [ -d "$WHEELS/app" ]; then
    install_wheels "$WHEELS/app" /tmp/search-service-site && PYTHONPATH="$PYTHONPATH:/tmp/search-service-site"
  fi
  if [ -d "$WHEELS/flag" ] && install_wheels "$WHEELS/flag" /tmp/flag-site; then
    # A stand-in for search_service/testing/reference_env.py's venv: its python sees the carried packages first.
    mkdir -p /tmp/flag-env/bin
    printf '#!/bin/sh\nPYTHONPATH=/tmp/flag-site exec %s "$@"\n' "$(command -v "$PYTHON")" \
      > /tmp/flag-env/bin/python
    chmod +x /tmp/flag-env/bin/python
    touch /tmp/flag-env/.complete
    export RAG_REFERENCE_ENV_DIR=/tmp/flag-env
  fi
fi
export PYTHONPATH
if [ -n "${RAG_REFERENCE_ENV_DIR:-}" ] || "$PYTHON" -c 'import FlagEmbedding' 2>/dev/null; then
  ENGINES=ours,flag,st
fi

DEVICE="${DEVICE:-cuda}"  # DEVICE=cpu SIZE=tiny: a smoke run of this script on a machine without a GPU
SIZE="${SIZE:-real}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
"$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "| transformers", transformers.__version__)'
if [ -n "${RAG_REFERENCE_ENV_DIR:-}" ]; then
  "$RAG_REFERENCE_ENV_DIR/bin/python" -c 'import transformers, FlagEmbedding; print("reference env: transformers", transformers.__version__, "FlagEmbedding imports")' || ENGINES=ours,st
fi

failed=0
STEPS=",${STEPS:-families,rerank,concurrency},"
step() {  # step <name> <seconds> <command...>: output to $OUT/<name>.log
  local name=$1 seconds=$2
  shift 2
  [[ "$STEPS" == *",$name,"* ]] || return 0
  echo "=== $name (at most $seconds s): $*"
  local started=$SECONDS
  timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee "$OUT/$name.log"
  local status=${PIPESTATUS[0]}
  echo "=== $name: exit $status after $((SECONDS - started)) s"
  [ "$status" -eq 0 ] || failed=$((failed + 1))
}

step families "${STEP1_S:-270}" "$PYTHON" benchmarks/families.py --device "$DEVICE" --size "$SIZE" \
  --families "${FAMILIES:-encoder,llm,layerwise,lightweight,qwen3-reranker-0.6b,qwen3-reranker-4b,qwen3-reranker-8b,mxbai-rerank-base-v2,mxbai-rerank-large-v2}" --queries "${QUERIES:-20}" \
  --budget-s "$(( ${STEP1_S:-270} - 40 ))" --json "$OUT/families.json"
step rerank "${STEP2_S:-150}" "$PYTHON" benchmarks/rerank.py --size "${SIZE/real/large}" --device "$DEVICE" \
  --dtype float16 --mixed-lengths --queries "${QUERIES:-20}" --rounds "${ROUNDS:-1}" \
  --engines "$ENGINES" \
  --json "$OUT/rerank.json"
step concurrency "${STEP3_S:-180}" "$PYTHON" benchmarks/concurrency.py --size "${SIZE/real/large}" --device "$DEVICE" \
  --clients 16 --seconds "${SECONDS_PER_MODE:-20}" --modes "${MODES:-off,on,on-serial}" \
  --json "$OUT/concurrency.json"
exit "$failed"
