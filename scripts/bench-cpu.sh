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
Prints every RESULT line and, for ours, the ATen ops per step, then per measurement the ratio of
ours to the peer's (and to ours without fusing) round by round, with their median: these shared
machines drift by 10-15% within minutes, and a ratio within one round holds when they do. On a CPU
without AMX or AVX512-BF16, bf16 rounds time one step: a bf16 training step there takes about a minute.

  --rounds N      alternating rounds per measurement (default 2)
  --precision P   fp32, bf16 or both (default both)
  --profile N     also record N training steps by operator, ours and the peer's eager, once per
                  precision (PROFILE lines: self time by operator class and the slowest operators;
                  a CEILING line: the most ours could gain while both run the same convolutions)
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
threads=$(nproc) batch=64

# Every RESULT as "<round> <label> <mode> <precision> <images/s>", for the ratios at the end, and
# every profile's convolution self time as "<label> <precision> <ms/step>", for the ceiling.
results=$(mktemp) convolutions=$(mktemp)
trap 'rm -f "$results" "$convolutions"' EXIT
round=0

# record <label> <mode> <precision>: prints stdin's lines prefixed with them, and keeps the images/s.
record() {
  local line
  while IFS= read -r line; do
    echo "$1 $2 $3: $line"
    if [[ $line =~ ^RESULT.*\ ([0-9.]+)\ (images|img)/s ]]; then
      echo "$round $1 $2 $3 ${BASH_REMATCH[1]}" >>"$results"
    elif [[ $line =~ ^PROFILE\ class\ convolution\ .*\ ([0-9.]+)\ ms/step ]]; then
      echo "$1 $3 ${BASH_REMATCH[1]}" >>"$convolutions"
    fi
  done
}

# ours <label> <mode> <precision> <steps> <warmup> [more resnext bench options]
ours() {
  local label=$1 mode=$2 p=$3 steps=$4 warmup=$5
  shift 5
  "$bin" bench my_resnext --device cpu --mode "$mode" --precision "$p" --batch "$batch" --steps "$steps" --warmup "$warmup" "$@" \
    | grep -E '^(ATen ops|RESULT|PROFILE)' | record "$label" "$mode" "$p"
}

# peer <label> <mode> <precision> <steps> <warmup> [more peer options]; its errors show, but not
# torch.profiler's complaint that a CPU-only machine has no GPU.
peer() {
  local label=$1 mode=$2 p=$3 steps=$4 warmup=$5
  shift 5
  "$python" -W ignore "$peer" --mode "$mode" --precision "$p" --batch "$batch" --threads "$threads" --channels-last \
    --steps "$steps" --warmup "$warmup" "$@" 2> >(grep -v 'gpuGetDeviceCount' >&2) \
    | grep -E '^(RESULT|PROFILE)' | record "$label" "$mode" "$p"
}

native_bf16=$(grep -m1 -o -E 'amx_bf16|avx512_bf16' /proc/cpuinfo || true)
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $threads cores, native bf16: ${native_bf16:-no}"
for p in fp32 bf16; do
  [ "$precision" = both ] || [ "$precision" = "$p" ] || continue
  if [ "$p" = fp32 ] || [ -n "$native_bf16" ]; then train=(5 1) eval=(10 2); else train=(1 1) eval=(3 1); fi
  for ((r = 1; r <= rounds; r++)); do
    round=$r
    ours ours train "$p" "${train[@]}"
    peer peer train "$p" "${train[@]}"
    ours ours-unfused train "$p" "${train[@]}" --fused false
    # The compiled step: compiling takes about a minute, in the warm-up steps (not timed).
    [ "$p" = bf16 ] && peer peer-compiled train "$p" "${train[0]}" 2 --compile
    ours ours eval "$p" "${eval[@]}"
    peer peer eval "$p" "${eval[@]}"
  done
  if ((profile > 0)); then
    round=profile
    ours ours train "$p" 1 1 --profile "$profile"
    peer peer train "$p" 1 1 --profile "$profile"
  fi
done

# median(values, n): the median of values[1..n], which it sorts.
median='function median(v, n,  i, j, t) {
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
  return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}'

# Ours over each other measurement of the same mode and precision, round by round, and the median.
echo
awk "$median"'$1 != "profile" { speed[$1 " " $2 " " $3 " " $4] = $5; if ($1 > last) last = $1; kinds[$3 " " $4] = 1; who[$2] = 1 }
  END {
    for (kind in kinds) for (other in who) {
      if (other == "ours") continue
      n = 0; list = ""
      for (r = 1; r <= last; r++) {
        a = speed[r " ours " kind]; b = speed[r " " other " " kind]
        if (a == "" || b == "") continue
        ratio[++n] = a / b; list = list sprintf(" %.2f", a / b)
      }
      if (n == 0) continue
      printf "RATIO ours / %s, %s: median %.2fx (by round:%s)\n", other, kind, median(ratio, n), list
    }
  }' "$results" | sort

# What the convolutions leave to win: they are the same oneDNN kernels in both programs, so a step
# that spent no time outside them would be at most the peer's timed step (median of its rounds)
# over our profiled convolutions.
awk -v batch="$batch" "$median"'FILENAME == ARGV[1] { if ($1 == "ours") conv[$2] = $3; next }
  $1 != "profile" && $3 == "train" && ($2 == "peer" || $2 == "peer-compiled") && ($4 in conv) {
    speeds[$2 " " $4] = speeds[$2 " " $4] " " $5
  }
  END {
    for (key in speeds) {
      split(key, part, " "); n = split(speeds[key], speed, " ")
      step = 1000 * batch / median(speed, n)
      printf "CEILING ours / %s, train %s: our convolutions take %.0f ms/step, the peer %.0f ms/step in all; with no time outside them ours would be at most %.2fx\n", part[1], part[2], conv[part[2]], step, step / conv[part[2]]
    }
  }' "$convolutions" "$results" | sort
