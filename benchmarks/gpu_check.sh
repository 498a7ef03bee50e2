#!/usr/bin/env bash
# The GPU check, one command: the course's venv, then every chapter on the GPU, a few hundred full-preset
# steps (images per second, peak memory) and the tiny clean model's training time, printed as one table.
# Run on a CUDA machine; CI never runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
make venv
.venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device; this check is for a GPU machine')"
MINI_MEDCLIP_CACHE="$(mktemp -d)" .venv/bin/python benchmarks/gpu_check.py "$@"
