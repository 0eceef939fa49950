#!/usr/bin/env bash
# Reproduce every blog experiment (5 runs x 300 epochs) on CUDA.
# With several GPUs, one experiment per GPU at a time; each run resumes if it was cut short.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/resnext
EXPERIMENTS=(my_resnext resnext my_resnext_lr my_resnext_lr_v2 my_resnext_lr_r)

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${gpus:-0}" -eq 0 ]; then
  echo "run-all needs CUDA: nvidia-smi sees no GPU (resnext info says what libtorch sees)." >&2
  echo "One experiment on CPU: $BIN train my_resnext --device cpu (about 26 min per epoch on 2 cores)." >&2
  exit 1
fi
echo "${#EXPERIMENTS[@]} experiments on $gpus GPU(s); results in results/<experiment>/, logs in results/<experiment>/train.log"
echo "Expected time: $(( (${#EXPERIMENTS[@]} + gpus - 1) / gpus )) run(s) per GPU, one after another;"
echo "each run is 300 epochs (the blog needed about a day per run on a GTX 1080 Ti)."
echo "Per-epoch seconds appear in results/<experiment>/metrics.csv (epoch_seconds) after the first epoch."

run_queue() {
  local gpu=$1; shift
  for exp in "$@"; do
    mkdir -p "results/$exp"
    echo "[cuda:$gpu] $exp"
    "$BIN" train "$exp" --device "cuda:$gpu" --resume >>"results/$exp/train.log" 2>&1 \
      || echo "[cuda:$gpu] $exp failed: see results/$exp/train.log" >&2
  done
}

pids=()
for ((g = 0; g < gpus; g++)); do
  queue=()
  for ((i = g; i < ${#EXPERIMENTS[@]}; i += gpus)); do queue+=("${EXPERIMENTS[$i]}"); done
  [ ${#queue[@]} -gt 0 ] && { run_queue "$g" "${queue[@]}" & pids+=($!); }
done
wait "${pids[@]}"
"$BIN" plot results --out plots
echo "done: figures in plots/"
