#!/usr/bin/env bash
# The README's CPU figures: resnext bench against the PyTorch peer on the blog's network, in the
# same run, alternating ours and the peer's so that a machine's drift touches both alike.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/bench-cpu.sh [--rounds N] [--precision fp32|bf16|both] [--profile N] [--peer PATH]

Benchmarks my_resnext (batch 64) on this CPU: training steps (augmentation, forward, backward,
update) and evaluation batches, `resnext bench` (with the fused BatchNorm-ReLU, its default on a
CPU, and without it) and the peer (bench/torch_peer.py, channels-last, the same malloc tunables
the binary sets for itself; in bf16 also its torch.compile'd step) one after the other, N rounds.
Prints every RESULT line and, for ours, the ATen ops per step. On a CPU without AMX or
AVX512-BF16, bf16 rounds time one step: a bf16 training step there takes about a minute.

  --rounds N      alternating rounds per measurement (default 2)
  --precision P   fp32, bf16 or both (default both)
  --profile N     also record N training steps by operator, ours and the peer's eager, once per
                  precision (PROFILE lines: self time by operator class and the slowest operators)
  --peer PATH     the peer script (default bench/torch_peer.py)
EOF
}

rounds=2 precision=both peer=bench/torch_peer.py profile=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
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

# ours <label> <mode> <precision> <steps> <warmup> [more resnext bench options]
ours() {
  local label=$1 mode=$2 p=$3 steps=$4 warmup=$5
  shift 5
  "$bin" bench my_resnext --device cpu --mode "$mode" --precision "$p" --batch 64 --steps "$steps" --warmup "$warmup" "$@" \
    | grep -E '^(ATen ops|RESULT|PROFILE)' | sed "s/^/$label $mode $p: /"
}

# peer <label> <mode> <precision> <steps> <warmup> [more peer options]
peer() {
  local label=$1 mode=$2 p=$3 steps=$4 warmup=$5
  shift 5
  "$python" -W ignore "$peer" --mode "$mode" --precision "$p" --batch 64 --threads "$threads" --channels-last \
    --steps "$steps" --warmup "$warmup" "$@" 2>/dev/null | grep -E '^(RESULT|PROFILE)' | sed "s/^/$label $mode $p: /"
}

native_bf16=$(grep -m1 -o -E 'amx_bf16|avx512_bf16' /proc/cpuinfo || true)
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads cores, native bf16: ${native_bf16:-no}"
for p in fp32 bf16; do
  [ "$precision" = both ] || [ "$precision" = "$p" ] || continue
  if [ "$p" = fp32 ] || [ -n "$native_bf16" ]; then train=(5 1) eval=(10 2); else train=(1 1) eval=(3 1); fi
  for ((r = 1; r <= rounds; r++)); do
    ours ours train "$p" "${train[@]}"
    peer peer train "$p" "${train[@]}"
    ours ours-unfused train "$p" "${train[@]}" --fused false
    # The compiled step: compiling takes about a minute, in the warm-up steps (not timed).
    [ "$p" = bf16 ] && peer peer-compiled train "$p" "${train[0]}" 2 --compile
    ours ours eval "$p" "${eval[@]}"
    peer peer eval "$p" "${eval[@]}"
  done
  if ((profile > 0)); then
    ours ours train "$p" 1 1 --profile "$profile"
    peer peer train "$p" 1 1 --profile "$profile"
  fi
done
