#!/usr/bin/env bash
# The performance page's CPU figures: resnext bench against the PyTorch peer on the blog's network,
# in the same run, alternating. The benchmark is scripts/bench_cpu.py (Python 3, standard library);
# `--help` says what it does.
set -euo pipefail
command -v python3 >/dev/null || { echo "bench-cpu: python3 not found: it runs the benchmark" >&2; exit 2; }
exec python3 "$(dirname "${BASH_SOURCE[0]}")/bench_cpu.py" "$@"
