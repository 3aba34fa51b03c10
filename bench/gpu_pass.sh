#!/usr/bin/env bash
# One command for a CUDA machine: installs fastgan in place if needed (offline), checks every import, then the
# CUDA tests, bench.kernels, bench.train_step; results in bench/results/. --dry-run: all that needs no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m bench.gpu_pass "$@"
