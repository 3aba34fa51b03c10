#!/usr/bin/env bash
# One command for a CUDA machine: CUDA tests, bench.kernels, bench.train_step, results in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m bench.gpu_pass "$@"
