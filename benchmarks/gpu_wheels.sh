#!/usr/bin/env bash
# Wheels for benchmarks/gpu.sh on an offline GPU machine whose image has torch, transformers 5,
# sentence-transformers, numpy, scipy, lxml, filelock, click, tqdm and prometheus-client (as the
# CUDA images we benchmark on do) but not the rest of the project's dependencies, nor
# FlagEmbedding's pinned stack. Run here, where PyPI is reachable; carry the folder there:
#
#   bash benchmarks/gpu_wheels.sh [.whl]      # then, there: WHEELS=.whl bash benchmarks/gpu.sh
#
# PY_VERSION (default 3.12) must be the GPU machine's Python. About 50 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-.whl}"
PY_VERSION="${PY_VERSION:-3.12}"
download() {  # download <folder> <requirement...>
  local folder=$1
  shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d "$DEST/$folder" "$@"
}
# The service (serve, migrate) on top of the image's packages.
download app flask blinker itsdangerous waitress pydantic pydantic-core annotated-types \
  typing-inspection "typing-extensions>=4.16" sqlalchemy greenlet alembic mako faiss-cpu psycopg \
  psycopg-binary beautifulsoup4 soupsieve pypdf python-docx bm25s redis
# FlagEmbedding's reference stack (search_service/testing/reference-requirements.lock), seen before the image's.
download flag FlagEmbedding==1.4.2 transformers==4.46.0 tokenizers==0.20.3 huggingface_hub==0.36.2 \
  sentence-transformers==5.7.0 datasets==5.0.1 dill==0.4.1 multiprocess==0.70.19 ir_datasets==0.6.3
du -sh "$DEST"
