#!/usr/bin/env bash
# The GPU benchmark of every reranker family, in one command, for a machine with one CUDA GPU.
#
#   bash benchmarks/gpu.sh                    # from the repository root; results in $OUT
#   QUERIES=10 BUDGET_S=300 bash benchmarks/gpu.sh --dtype bfloat16
#
# Needs python3 with torch (CUDA), transformers 5, tokenizers, safetensors, filelock and
# (for the CrossEncoder peer) sentence-transformers; nothing is installed and nothing is
# downloaded: the models are built with random weights at the published sizes (see
# benchmarks/families.py). Expected runtime on one H100 or H200: 2 to 4 minutes, under 8 in any
# case (families not started after BUDGET_S seconds, default 420, are skipped).
# Extra arguments go to benchmarks/families.py. Writes $OUT/families.json and $OUT/families.log.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/search-service-gpu}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"

nvidia-smi
"$PYTHON" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "| transformers", transformers.__version__)'

PYTHONUNBUFFERED=1 PYTHONPATH=. HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
  "$PYTHON" benchmarks/families.py --device cuda --size real \
  --queries "${QUERIES:-20}" --budget-s "${BUDGET_S:-420}" \
  --json "$OUT/families.json" "$@" 2>&1 | tee "$OUT/families.log"
