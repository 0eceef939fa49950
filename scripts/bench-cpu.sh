#!/usr/bin/env bash
# The README's CPU figures: resnext bench against the PyTorch peer on the blog's network, in the
# same run, alternating ours and the peer's so that a machine's drift touches both alike.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/bench-cpu.sh [--rounds N] [--precision fp32|bf16|both] [--peer PATH]

Benchmarks my_resnext (batch 64) on this CPU: training steps (augmentation, forward, backward,
update) and evaluation batches, `resnext bench` and the peer (bench/torch_peer.py,
channels-last, the same malloc tunables the binary sets for itself) one after the other, N rounds.
Prints every RESULT line and, for ours, the ATen ops per step. bf16 rounds time fewer steps: on a
CPU without AMX or AVX512-BF16 a bf16 training step takes about a minute.

  --rounds N      alternating rounds per measurement (default 2)
  --precision P   fp32, bf16 or both (default both)
  --peer PATH     the peer script (default bench/torch_peer.py)
EOF
}

rounds=2 precision=both peer=bench/torch_peer.py
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-cpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -f "$peer" ] || { echo "bench-cpu.sh: no peer script at $peer (pass --peer PATH)" >&2; exit 2; }
bin=${RESNEXT_BIN:-target/release/resnext}
python=${PYTHON:-.venv/bin/python}
# What resnext sets for itself (runtime::MALLOC_TUNABLES), given to the peer too.
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295
threads=$(nproc)

# ours <mode> <precision> <steps> <warmup>
ours() {
  "$bin" bench my_resnext --device cpu --mode "$1" --precision "$2" --batch 64 --steps "$3" --warmup "$4" \
    | grep -E '^(ATen ops|RESULT)' | sed "s/^/ours $1 $2: /"
}

# peer <mode> <precision> <steps> <warmup>
peer() {
  "$python" -W ignore "$peer" --mode "$1" --precision "$2" --batch 64 --threads "$threads" --channels-last \
    --steps "$3" --warmup "$4" | grep '^RESULT' | sed "s/^/peer $1 $2: /"
}

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads cores"
for p in fp32 bf16; do
  [ "$precision" = both ] || [ "$precision" = "$p" ] || continue
  if [ "$p" = fp32 ]; then train=(5 1) eval=(10 2); else train=(1 1) eval=(3 1); fi
  for ((r = 1; r <= rounds; r++)); do
    ours train "$p" "${train[@]}"
    peer train "$p" "${train[@]}"
    ours eval "$p" "${eval[@]}"
    peer eval "$p" "${eval[@]}"
  done
done
