#!/usr/bin/env bash
# The first command to run on a GPU machine, sized for a short slot: what libtorch sees, our speed
# against the PyTorch peer, a bf16 training run stopped by SIGINT and resumed, the export checked in
# Python on the device, and run-all with five runs on one GPU against one alone; each phase in
# order of value within a time budget. --out gets three files: report.md, report.json (both
# rewritten after every phase) and logs.tar.gz. `--help` says more.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BLOG_EXPERIMENTS=(my_resnext resnext my_resnext_lr my_resnext_lr_v2 my_resnext_lr_r)

usage() {
  cat <<'EOF'
Usage: scripts/gpu-check.sh [--device cuda|cpu] [--quick] [--budget SECONDS] [--out DIR]
                            [--data-dir DIR] [--peer PATH] [--train-limit N] [--work DIR]

The one command to run first on a GPU machine. The phases run in order of value, each given a
share of the time left (a phase that no longer fits is marked "skipped (budget)"), and the
whole check ends inside --budget:
  1. info: `resnext info`; with --device cuda the check stops here, saying why, when libtorch
     sees no CUDA device;
  2. bench-64: ours (`resnext bench my_resnext`) and the PyTorch peer (bench/torch_peer.py),
     training steps at batch 64 in bf16 and fp32, alternating, TF32 off on both;
  3. bench-512: the same at batch 512, and evaluation at batch 512;
  4. memory-format: ours in channels-last against NCHW (the CUDA default), training at batch 64;
  5. peer-compiled: the peer under torch.compile (and, on CUDA, mode reduce-overhead: CUDA
     graphs), training at batch 64 in bf16, compile time apart;
  6. train-resume: `resnext train my_resnext` in bf16 for 2 epochs, stopped by SIGINT in the
     first, then `--resume`d: each epoch exactly once in metrics.csv;
  7. eval-export: `resnext eval` (fp32 and bf16) and `resnext export` of that run, and in
     python3 on the device the export classifies the test images as `resnext eval` does;
  8. run-all: `scripts/run-all.sh --per-gpu 5` over the five blog experiments for one epoch on
     one GPU, against my_resnext alone.
On CUDA each benchmark also samples the GPU's utilisation (nvidia-smi), to tell a host-bound
step from a GPU-bound one. A check fails when a command fails or times out, when a training run
prints per step, or when a line of our commands' stderr contains "warn" (any case).

Options:
  --device cuda|cpu  cuda (default): the first GPU libtorch sees (CUDA_VISIBLE_DEVICES selects
                     it); cpu: the same phases on the CPU (slow without --quick)
  --quick            tiny sizes everywhere (demo instead of my_resnext, a few hundred images,
                     --set model.width=2 for the blog networks, a narrow peer, one bench step):
                     every phase in about 2-3 minutes on a 2-core CPU; the speeds mean nothing
  --budget SECONDS   the time the whole check may take (default 540)
  --out DIR          gets report.md, report.json and logs.tar.gz (the text logs), nothing else
                     (default results/gpu-check)
  --data-dir DIR     CIFAR-10 folder (default $CIFAR10_DIR, else data/cifar-10-batches-bin in
                     this repository or bundle).
                     Batch files may be .bin or .bin.xz; with only some training batches the
                     runs train on the images there, and the report says so beside every accuracy
  --peer PATH        the PyTorch peer script (default bench/torch_peer.py)
  --train-limit N    train phases 6 and 8 on the first N training images only
  --work DIR         where run folders, checkpoints and logs are made (default: a temporary
                     folder, removed at the end)
  -h, --help         this text

Environment: RESNEXT_BIN (default target/release/resnext); python3 on PATH must have torch.
Exit status: 0 when every check passed, 1 otherwise, 2 for bad options.
EOF
}

die() {
  echo "gpu-check: $*" >&2
  exit 2
}

# --- options -------------------------------------------------------------------------------------
device=cuda
quick=0
budget=540
peer=""
data_dir=${CIFAR10_DIR:-$ROOT/data/cifar-10-batches-bin}
out=results/gpu-check
train_limit=""
work=""
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --device) device=${2-}; shift 2 || die "--device needs cuda or cpu" ;;
    --quick) quick=1; shift ;;
    --budget) budget=${2-}; shift 2 || die "--budget needs a number of seconds" ;;
    --peer) peer=${2-}; shift 2 || die "--peer needs a path" ;;
    --data-dir) data_dir=${2-}; shift 2 || die "--data-dir needs a folder" ;;
    --out) out=${2-}; shift 2 || die "--out needs a folder" ;;
    --train-limit) train_limit=${2-}; shift 2 || die "--train-limit needs a number" ;;
    --work) work=${2-}; shift 2 || die "--work needs a folder" ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ $device == cuda || $device == cpu ]] || die "--device must be cuda or cpu, not '$device'"
[[ $budget =~ ^[1-9][0-9]*$ ]] || die "--budget must be a positive number of seconds, not '$budget'"
[[ -z $train_limit || $train_limit =~ ^[1-9][0-9]*$ ]] || die "--train-limit must be a positive number, not '$train_limit'"
# Paths given relative to the caller's folder; then everything runs from the repository root.
abs() { realpath -m -- "$1"; }
out=$(abs "$out")
data_dir=$(abs "$data_dir")
export CIFAR10_DIR=$data_dir # what our commands read
peer=$(abs "${peer:-$ROOT/bench/torch_peer.py}")
BIN=$(abs "${RESNEXT_BIN:-$ROOT/target/release/resnext}")
export RESNEXT_BIN=$BIN
cd "$ROOT"
[[ -x $BIN ]] || die "the resnext binary $BIN does not exist: run 'make build' (or set RESNEXT_BIN)"
[[ -f $peer ]] || die "the PyTorch peer $peer was not found: pass --peer PATH"
command -v python3 >/dev/null || die "python3 not found: it runs the peer, the export check and the report (it needs torch)"
for keep in report.md report.json logs.tar.gz; do [[ ! -d $out/$keep ]] || die "--out $out: $keep is a folder"; done
if [[ -d $out && -n $(ls -A "$out") ]]; then
  extra=$(ls -A "$out" | grep -vxE 'report\.md|report\.json|logs\.tar\.gz' || true)
  [[ -z $extra ]] || die "--out $out holds other files ($(head -n 3 <<<"$extra" | paste -sd' ')): choose an empty folder or an earlier check's"
fi
mkdir -p "$out"
rm -f "$out/report.md" "$out/report.json" "$out/logs.tar.gz"
if [[ -z $work ]]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
  trap 'rm -rf "$work"' EXIT
else
  work=$(abs "$work")
  rm -rf "$work"
  mkdir -p "$work"
fi
logs=$work/logs
mkdir -p "$logs"
records=$work/records.tsv
: >"$records"
failures=()
started=$SECONDS
deadline=$((started + budget))
# Kept back from the phases for the last report and the log archive.
reserve=$((budget / 30 + 3))

# --- the data: which batch files there are ---------------------------------------------------------
batches=0
data_files=()
[[ -f $data_dir/test_batch.bin || -f $data_dir/test_batch.bin.xz ]] ||
  die "no test_batch.bin (or .bin.xz) in $data_dir: pass --data-dir or set CIFAR10_DIR"
for k in 1 2 3 4 5; do
  if [[ -f $data_dir/data_batch_$k.bin ]]; then data_files+=("data_batch_$k.bin")
  elif [[ -f $data_dir/data_batch_$k.bin.xz ]]; then data_files+=("data_batch_$k.bin.xz")
  else break; fi
  batches=$k
done
((batches)) || die "no data_batch_1.bin (or .bin.xz) in $data_dir: at least one training batch is needed"
test_file=$([[ -f $data_dir/test_batch.bin ]] && echo test_batch.bin || echo test_batch.bin.xz)
available=$((batches * 10000))
train_images=$available
[[ -z $train_limit ]] || ((train_limit > available)) || train_images=$train_limit
if ((batches == 5)); then
  data_note="CIFAR-10 from $data_dir ($test_file and the five training batches)"
else
  data_note="partial CIFAR-10 from $data_dir: $batches of 5 training batches (${data_files[*]}), $test_file"
fi

# --- sizes ---------------------------------------------------------------------------------------
if ((quick)); then
  bench_exp=(my_resnext --set model.width=2)
  steps=(--steps 1 --warmup 1)
  big_batch=32
  peer_size=(--depth 11 --cardinality 2 --width 2)
  check_exp=demo
  # --set only when the run starts: --resume refuses a changed one.
  check_set=(--set model.width=2 --set batch_size=32)
  train_images=$((train_images < 256 ? train_images : 256))
  check_args=(--test-limit 200)
  eval_limit=200
  run_all_args=(--epochs 1 --set model.width=2 --train-limit 256 --test-limit 100)
  run_all_only=(--only my_resnext,resnext)
  if [[ $device == cuda ]]; then
    # An epoch on a GPU is over in a blink: make it long enough to be interrupted.
    check_set=()
    train_images=$((available < 10000 ? available : 10000))
    check_args=(--test-limit 1000 --sync-every 10)
    eval_limit=1000
  fi
else
  bench_exp=(my_resnext)
  steps=(--steps 30 --warmup 5)
  [[ $device == cpu ]] && steps=(--steps 3 --warmup 1)
  big_batch=512
  peer_size=()
  check_exp=my_resnext
  check_set=()
  check_args=()
  eval_limit=10000
  run_all_args=(--epochs 1)
  run_all_only=()
fi
check_args+=(--train-limit "$train_images")
[[ " ${run_all_args[*]} " == *" --train-limit "* ]] || run_all_args+=(--train-limit "$train_images")
threads=$(nproc)
peer_flags=(--device "$device" --threads "$threads" --tf32 off "${peer_size[@]}")
[[ $device == cpu ]] && peer_flags+=(--channels-last) # the peer's fastest CPU setting

# --- helpers -------------------------------------------------------------------------------------
say() { echo "[gpu-check $(date +%H:%M:%S)] $*"; }

# A record for the report: fields joined by tabs (tabs and newlines inside become spaces).
record() {
  local fields=() f
  for f in "$@"; do fields+=("$(tr '\t\n' '  ' <<<"$f" | sed 's/ *$//')"); done
  (IFS=$'\t'; echo "${fields[*]}") >>"$records"
}

# check NAME OK(0|1) DETAIL: one line on the screen, one record; a failure fails the run.
check() {
  local name=$1 ok=$2 detail=$3
  record check "$name" "$ok" "$detail"
  if ((ok)); then
    echo "  ok    $name: $detail"
  else
    echo "  FAIL  $name: $detail"
    failures+=("$name")
  fi
}

# The report and the log archive, as of now: what a kill leaves.
write_report() {
  record fact seconds $((SECONDS - started))
  python3 "$ROOT/scripts/gpu-check-report.py" "$work" "$out" >"$logs/report.out" 2>&1 ||
    echo "gpu-check: writing the report failed: $(tail -n 1 "$logs/report.out")" >&2
  # Text logs only: run folders hold checkpoints and exports, which stay out.
  (
    cd "$work"
    { find logs runs -type f \( -name '*.out' -o -name '*.err' -o -name '*.log' -o -name '*.csv' -o -name '*.json' \
      -o -name '*.txt' -o -name '*.gpu-util' \) 2>/dev/null || true; } | sort | tar -czf "$out/logs.tar.gz.tmp" -T - records.tsv
  ) && mv "$out/logs.tar.gz.tmp" "$out/logs.tar.gz"
}

# The phases in order of value: name, weight (its share of the time left against the phases
# after it) and the least time it needs to be worth starting.
phases=(info:1:5 bench-64:3:40 bench-512:4:30 memory-format:1:20 peer-compiled:4:45 train-resume:3:40
  eval-export:1:20 run-all:3:60)
if ((quick)); then
  # Tiny sizes: each command's start-up (loading libtorch, torch in Python) is most of its time.
  phases=(info:1:3 bench-64:4:15 bench-512:5:15 memory-format:2:6 peer-compiled:3:20 train-resume:1:8
    eval-export:1:6 run-all:2:12)
fi
phase_name=""
phase_start=$SECONDS
share_end=$SECONDS
hard_end=$SECONDS

# end_phase: the phase running ends (its seconds go to the report) and the report is rewritten.
end_phase() {
  [[ -n $phase_name ]] && record phase "$phase_name" $((SECONDS - phase_start)) ran
  phase_name=""
  write_report
}

# phase NAME: starts NAME when its share of the time left is at least what it needs (else
# records it skipped and returns 1). Its measurements start while its share lasts; a command
# may run on past the share, but never into the least time the phases after it need.
phase() {
  local name=$1 entry n w m weight=0 total=0 minimum=0 later=0 seen=0
  [[ -z $phase_name ]] || end_phase
  for entry in "${phases[@]}"; do
    IFS=: read -r n w m <<<"$entry"
    if ((seen)); then later=$((later + m)); fi
    [[ $n == "$name" ]] && { seen=1; weight=$w; minimum=$m; }
    ((seen)) && total=$((total + w))
  done
  local left=$((deadline - reserve - SECONDS))
  local share=$((left * weight / total)) room=$((left - later))
  # The later phases' least time is kept back only when this phase still fits beside it: an
  # earlier phase is worth more.
  ((room >= minimum)) || room=$left
  ((share >= minimum)) || share=$minimum
  ((share < room)) || share=$room
  if ((share < minimum)); then
    record phase "$name" 0 "skipped (budget): ${share}s of ${left}s left, it needs at least ${minimum}s"
    say "$name: skipped (budget): ${share}s of the ${left}s left, it needs at least ${minimum}s"
    return 1
  fi
  phase_name=$name
  phase_start=$SECONDS
  share_end=$((SECONDS + share))
  hard_end=$((SECONDS + room))
  say "$name (${share}s, at most $((hard_end - SECONDS))s)"
}

# Whether a measurement may still start in this phase; if not, it is recorded skipped.
starts() {
  ((SECONDS < share_end)) && return 0
  record skip "$1" "skipped (budget): phase ${phase_name} had used its share"
  echo "  skip  $1: skipped (budget)"
  return 1
}

# The seconds a command of this phase may run (at least 1).
left() { local s=$((hard_end - SECONDS)); echo $((s > 1 ? s : 1)); }

# run NAME CMD...: one command, stopped when it would eat into the phases after this one, stdout
# and stderr to logs/NAME.out and logs/NAME.err (ours are scanned for warnings at the end);
# returns its status (124 when the budget stopped it).
run() {
  local name=$1
  shift
  timeout --signal=INT --kill-after=10 "$(left)" "$@" >"$logs/$name.out" 2>"$logs/$name.err"
}

# The last line of file $1 matching the extended regex $2, or nothing.
last_match() { grep -E -- "$2" "$1" 2>/dev/null | tail -n 1 || true; }

# At most a few lines per epoch: $1 the output file, $2 the epochs it covered.
check_lines() {
  local name=$1 file=$2 epochs=$3 lines
  lines=$(wc -l <"$file")
  local allowed=$((6 + 5 * epochs))
  if ((lines <= allowed)); then
    check "$name" 1 "$lines lines of output for $epochs epoch(s) (at most $allowed)"
  else
    check "$name" 0 "$lines lines of output for $epochs epoch(s), more than $allowed: something prints per step ($file)"
  fi
}

# The epochs listed in a run's metrics.csv, e.g. "0 1".
epochs_of() { tail -n +2 "$1/metrics.csv" 2>/dev/null | cut -d, -f1 | paste -sd' ' || true; }

# A column of a run's metrics.csv for epoch $3 (by header name $2).
metric() {
  awk -F, -v col="$2" -v epoch="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
    $1 == epoch { print $c }' "$1/metrics.csv" 2>/dev/null || true
}

# Mean GPU utilisation (%) while CMD runs, from nvidia-smi every 100 ms; "-" without nvidia-smi.
gpu_busy_file=""
start_gpu_sampling() {
  gpu_busy_file=""
  [[ $device == cuda ]] && command -v nvidia-smi >/dev/null || return 0
  gpu_busy_file=$logs/$1.gpu-util
  nvidia-smi --id="${one_gpu:-0}" --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 100 \
    >"$gpu_busy_file" 2>/dev/null &
  gpu_sampler=$!
}
stop_gpu_sampling() {
  [[ -n $gpu_busy_file ]] || { echo -; return; }
  kill "$gpu_sampler" 2>/dev/null || true
  wait "$gpu_sampler" 2>/dev/null || true
  awk '$1 ~ /^[0-9]+$/ { s += $1; n++ } END { if (n) printf "%.0f", s / n; else print "-" }' "$gpu_busy_file"
}

# bench_ours NAME SIZE-ARGS...: `resnext bench` with them; records images/s, ms/step, ops.
bench_ours() {
  local name=bench-ours-$1 rc=0 result ops busy
  shift
  starts "$name" || return 0
  start_gpu_sampling "$name"
  run "$name" "$BIN" bench "${bench_exp[@]}" --device "$device" "$@" || rc=$?
  busy=$(stop_gpu_sampling)
  result=$(last_match "$logs/$name.out" '^RESULT ')
  if ((rc == 0)) && [[ $result =~ median\ ([0-9.]+)\ ms/step,\ ([0-9.]+)\ images/s ]]; then
    local ms=${BASH_REMATCH[1]} speed=${BASH_REMATCH[2]}
    ops=$(sed -n 's/^ATen ops per [a-z]*: //p' "$logs/$name.out")
    record bench ours "$phase_name" "$*" "$speed" "$ms" "${ops:--}" "$busy" "${bench_exp[*]}"
    check "$name" $(($(wc -l <"$logs/$name.out") <= 6)) "$speed images/s, ${ops:-?} ATen ops per step, GPU busy ${busy}%"
  else
    check "$name" 0 "exit status $rc$( ((rc == 124)) && echo ' (stopped by the budget)'): $(tail -n 1 "$logs/$name.err") (log logs/$name.err)"
  fi
}

# bench_peer NAME ARGS...: the peer with them; records images/s and ms/step.
bench_peer() {
  local name=bench-peer-$1 rc=0 result busy
  shift
  starts "$name" || return 0
  start_gpu_sampling "$name"
  run "$name" python3 "$peer" "${peer_flags[@]}" "$@" || rc=$?
  busy=$(stop_gpu_sampling)
  mv "$logs/$name.err" "$logs/$name.peer-err"
  result=$(last_match "$logs/$name.out" '^RESULT ')
  if ((rc == 0)) && [[ $result =~ median\ ([0-9.]+)\ ms/step,\ ([0-9.]+)\ img/s ]]; then
    local ms=${BASH_REMATCH[1]} speed=${BASH_REMATCH[2]} compile=""
    [[ $result =~ first\ step\ ([0-9.]+)\ s ]] && compile=${BASH_REMATCH[1]}
    record bench peer "$phase_name" "$*" "$speed" "$ms" - "$busy" "ResNeXt-29 8x16d${peer_size[*]:+ (${peer_size[*]})}" "$compile"
    check "$name" 1 "$speed images/s, GPU busy ${busy}%${compile:+, first step ${compile}s (compiles)}"
  else
    check "$name" 0 "exit status $rc$( ((rc == 124)) && echo ' (stopped by the budget)'): $(tail -n 1 "$logs/$name.peer-err") (log logs/$name.peer-err)"
  fi
}

record fact device "$device"
record fact quick "$quick"
record fact budget "$budget"
record fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
record fact host "$(hostname)"
record fact commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || cat "$ROOT/COMMIT" 2>/dev/null || echo unknown)"
record fact data "$data_note"
record fact train_images "$train_images"
record fact partial_data $((batches < 5))
# run-all below is measured on one GPU: the first that CUDA_VISIBLE_DEVICES leaves.
one_gpu=${CUDA_VISIBLE_DEVICES:-0}
one_gpu=${one_gpu%%,*}

# --- 1. libtorch and the device -------------------------------------------------------------------
if ! phase info; then
  record fact finished 1
  write_report
  echo "gpu-check: FAILED: a budget of ${budget}s leaves no time for anything; report $out/report.md"
  exit 1
fi
rc=0
run info "$BIN" info || rc=$?
cp "$logs/info.out" "$work/info.txt"
cat "$logs/info.out"
if ((rc)); then
  # The bundle's launcher refuses a libtorch it was not built against, in one line.
  check info 0 "resnext info exited with status $rc: $(tail -n 1 "$logs/info.err")"
  record fact finished 1
  end_phase
  echo "gpu-check: FAILED: resnext does not run here: $(tail -n 1 "$logs/info.err")"
  exit 1
fi
check info 1 "$(sed -n 's/^libtorch: //p' "$logs/info.out")"
gpu_line=$(grep -m1 -E '^  cuda:0: ' "$logs/info.out" | sed 's/^  cuda:0: //' || true)
record fact gpu "${gpu_line%%,*}"
record fact gpu_detail "$gpu_line"
record fact driver "$(sed -n 's/^NVIDIA driver: //p' "$logs/info.out")"
record fact libtorch "$(sed -n 's/^libtorch: //p' "$logs/info.out")"
record fact cpu "$(sed -n 's/^CPU: //p' "$logs/info.out")"
if command -v nvidia-smi >/dev/null; then
  record fact nvidia_smi "$(nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>&1 | paste -sd';')"
fi
if [[ $device == cuda ]] && ! grep -q '^CUDA available: true' "$logs/info.out"; then
  why=$(sed -n 's/^NVIDIA driver: //p' "$logs/info.out")
  check cuda-available 0 "libtorch sees no CUDA device (NVIDIA driver: ${why:-?}); the other phases need one (--device cpu checks the CPU)"
  record fact finished 1
  end_phase
  echo "gpu-check: FAILED: CUDA is not available; report $out/report.md"
  exit 1
fi
[[ $device == cuda ]] && check cuda-available 1 "$gpu_line"

# --- 2-5. speed --------------------------------------------------------------------------------------
if phase bench-64; then
  for precision in bf16 fp32; do
    bench_ours "train-$precision-64" --mode train --precision "$precision" --batch 64 "${steps[@]}"
    bench_peer "train-$precision-64" --mode train --precision "$precision" --batch 64 "${steps[@]}"
  done
fi
if phase bench-512; then
  for mode in train eval; do
    for precision in bf16 fp32; do
      bench_ours "$mode-$precision-$big_batch" --mode "$mode" --precision "$precision" --batch "$big_batch" "${steps[@]}"
      bench_peer "$mode-$precision-$big_batch" --mode "$mode" --precision "$precision" --batch "$big_batch" "${steps[@]}"
    done
  done
fi
if phase memory-format; then
  other=$([[ $device == cuda ]] && echo channels-last || echo contiguous)
  for precision in bf16 fp32; do
    bench_ours "train-$precision-64-$other" --mode train --precision "$precision" --batch 64 --memory-format "$other" "${steps[@]}"
  done
fi
if phase peer-compiled; then
  modes=(default)
  [[ $device == cuda ]] && modes+=(reduce-overhead)
  compiled_mode=$([[ $device == cuda ]] && echo train || echo eval) # a CPU compiles a training step for minutes
  for mode in "${modes[@]}"; do
    bench_peer "$compiled_mode-bf16-64-compile-$mode" --mode "$compiled_mode" --precision bf16 --batch 64 \
      --compile "$mode" "${steps[@]}"
  done
fi

# --- 6. bf16 training, interrupted and resumed ------------------------------------------------------
run_dir=$work/runs/train-bf16
trained=0
if phase train-resume; then
  train_cmd=("$BIN" train "$check_exp" --device "$device" --precision bf16 --epochs 2 --out "$run_dir" "${check_args[@]}")
  start_cmd=("${train_cmd[@]}" "${check_set[@]}")
  record fact train_command "${start_cmd[*]}"
  # A background job of a script ignores SIGINT until the trainer installs its handler, which it
  # does before its first step: the signal goes after the first progress line.
  "${start_cmd[@]}" >"$logs/train-interrupted.out" 2>"$logs/train-interrupted.err" &
  pid=$!
  stop_by=$((SECONDS + $(left) / 2))
  while kill -0 "$pid" 2>/dev/null && ! grep -qE '^epoch 1/2 step ' "$logs/train-interrupted.out"; do
    ((SECONDS < stop_by)) || break
    sleep 0.1
  done
  kill -INT "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" || rc=$?
  stopped=$(last_match "$logs/train-interrupted.out" '^interrupted at epoch 0 step ')
  if ((rc == 130)) && [[ -n $stopped && -f $run_dir/last.safetensors ]]; then
    check train-sigint 1 "exit status 130: ${stopped%%:*}, checkpoint written"
  else
    check train-sigint 0 "exit status $rc (expected 130 with a mid-epoch checkpoint): $(tail -n 2 "$logs/train-interrupted.out" "$logs/train-interrupted.err" | paste -sd' ')"
  fi
  check_lines train-sigint-output "$logs/train-interrupted.out" 1
  rc=0
  run train-resumed "${train_cmd[@]}" --resume || rc=$?
  epochs=$(epochs_of "$run_dir")
  if ((rc == 0)) && grep -q '^resuming ' "$logs/train-resumed.out" && [[ $epochs == "0 1" ]]; then
    trained=1
    check train-resume 1 "resumed and finished; metrics.csv has epochs $epochs, each once"
  else
    check train-resume 0 "exit status $rc, metrics.csv epochs '${epochs}' (expected '0 1'): $(tail -n 1 "$logs/train-resumed.err")"
  fi
  check_lines train-resume-output "$logs/train-resumed.out" 2
  for epoch in 0 1; do
    record train "$epoch" "$(metric "$run_dir" images_per_second "$epoch")" "$(metric "$run_dir" val_accuracy "$epoch")" \
      "$(metric "$run_dir" epoch_seconds "$epoch")"
  done
  cp "$run_dir/metrics.csv" "$logs/train-metrics.csv" 2>/dev/null || true
fi

# --- 7. eval and export, checked in Python on the device -----------------------------------------
if phase eval-export; then
  if ((trained)); then
    rc=0
    run eval "$BIN" eval "$run_dir" --device "$device" --precision fp32 --limit "$eval_limit" --logits-json "$work/logits.json" || rc=$?
    # "loss (with L2) 4.5239  cross-entropy 4.1142  accuracy 7.00%"
    eval_acc=$(sed -n 's/^loss .* accuracy \([0-9.]*\)%.*/\1/p' "$logs/eval.out" | head -n 1)
    check eval $((rc == 0 && ${#eval_acc} > 0)) "exit status $rc, test accuracy ${eval_acc:-?}% on $eval_limit images (fp32)"
    rc=0
    run eval-bf16 "$BIN" eval "$run_dir" --device "$device" --precision bf16 --limit "$eval_limit" || rc=$?
    eval_bf16=$(sed -n 's/^loss .* accuracy \([0-9.]*\)%.*/\1/p' "$logs/eval-bf16.out" | head -n 1)
    check eval-bf16 $((rc == 0 && ${#eval_bf16} > 0)) "exit status $rc, test accuracy ${eval_bf16:-?}% (bf16)"
    rc=0
    run export "$BIN" export "$run_dir" --out "$run_dir/model.pt" || rc=$?
    exported=0
    [[ -s $run_dir/model.pt && -s $run_dir/model.pt.json ]] && exported=1
    check export $((rc == 0 && exported)) "exit status $rc; model.pt and model.pt.json written: $((exported)) (1 = yes)"
    rc=0
    # fp32 on both sides: PyTorch's default TF32 convolutions on Ampere+ would differ from ours.
    run export-python python3 - "$run_dir/model.pt" "$work/logits.json" "$data_dir/$test_file" "$eval_limit" "$device" <<'PYTHON' || rc=$?
import json, lzma, sys
import torch
model_path, logits_path, test_file, n, device = sys.argv[1:6]
n = int(n)
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
meta = json.load(open(model_path + ".json"))
with (lzma.open if test_file.endswith(".xz") else open)(test_file, "rb") as f:
    records = torch.frombuffer(bytearray(f.read(3073 * n)), dtype=torch.uint8).view(-1, 3073)
labels, images = records[:, 0].long(), records[:, 1:].reshape(-1, 3, 32, 32)
model = torch.jit.load(model_path, map_location=device)
mean = torch.tensor(meta["mean"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
std = torch.tensor(meta["std"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
with torch.no_grad():
    batches = [model((images[i:i + 500].to(device).float() - mean) / std) for i in range(0, len(images), 500)]
ran_on = str(batches[0].device)
logits = torch.cat(batches).float().cpu()
rust = json.load(open(logits_path))
print(json.dumps({
    "accuracy": (logits.argmax(1) == labels).float().mean().item(),
    "max_logit_diff": (logits - torch.tensor(rust["logits"])).abs().max().item(),
    "labels_match": rust["labels"] == labels.tolist(),
    "images": len(labels),
    "ran_on": ran_on,
    "torch": torch.__version__,
}))
PYTHON
    mv "$logs/export-python.err" "$logs/export-python.peer-err"
    py=$(tail -n 1 "$logs/export-python.out")
    if ((rc == 0)) && [[ $py == "{"* ]]; then
      read -r py_acc py_diff py_labels py_on < <(python3 -c 'import json, sys; r = json.loads(sys.argv[1]);
print(round(100 * r["accuracy"], 2), r["max_logit_diff"], r["labels_match"], r["ran_on"])' "$py")
      record export "${eval_acc:-}" "$py_acc" "$py_diff" "$py_on" "${eval_bf16:-}" "$eval_limit"
      tolerance=$([[ $device == cuda ]] && echo 1e-2 || echo 1e-4)
      same=$(python3 -c "import sys; a, b, d, t = map(float, sys.argv[1:]); print(int(abs(a - b) <= 0.1 and d <= t))" \
        "${eval_acc:-nan}" "$py_acc" "$py_diff" "$tolerance")
      [[ $py_on == "$device"* && $py_labels == True ]] || same=0
      check export-python "$same" "the export in torch on $py_on: accuracy $py_acc% vs resnext eval ${eval_acc:-?}%, max |logit difference| $py_diff (at most $tolerance)"
    else
      check export-python 0 "python3 failed (status $rc): $(tail -n 1 "$logs/export-python.peer-err")"
    fi
  else
    check eval 0 "not run: the training run of phase train-resume did not finish"
  fi
fi

# --- 8. run-all: five runs at once on one GPU, against one alone ------------------------------------
if phase run-all; then
  run_all() { # NAME run-all-options...
    local name=$1 rc=0 begin=$SECONDS
    shift
    CUDA_VISIBLE_DEVICES=$one_gpu run "$name" "$ROOT/scripts/run-all.sh" --device "$device" \
      --results "$work/runs/$name" "$@" -- "${run_all_args[@]}" || rc=$?
    local wall=$((SECONDS - begin)) exp images=0 sum=0 ok=1
    for exp in "${BLOG_EXPERIMENTS[@]}"; do
      [[ -d $work/runs/$name/$exp ]] || continue
      local ips n
      ips=$(metric "$work/runs/$name/$exp" images_per_second 0)
      [[ -n $ips ]] || { ok=0; continue; }
      sum=$(awk -v a="$sum" -v b="$ips" 'BEGIN { print a + b }')
      # "training my_resnext on ...: 50000 train / 10000 test images, ..."
      n=$(sed -n 's|.*: \([0-9]*\) train / [0-9]* test images.*|\1|p' "$work/runs/$name/$exp/train.log" | tail -n 1)
      images=$((images + ${n:-0}))
      record run_all_run "$name" "$exp" "$ips" "$(metric "$work/runs/$name/$exp" epoch_seconds 0)"
      check_lines "$name-$exp-output" "$work/runs/$name/$exp/train.log" 1
    done
    record run_all "$name" "$sum" "$wall" "$images"
    check "$name" $((rc == 0 && ok)) "exit status $rc$( ((rc == 124)) && echo ' (stopped by the budget)') in ${wall}s; sum of the runs' images/s: $sum"
  }
  per_gpu=$([[ $device == cuda ]] && echo 5 || echo 2)
  run_all "run-all-$per_gpu" --per-gpu "$per_gpu" "${run_all_only[@]}"
  run_all run-all-1 --per-gpu 1 --only my_resnext
fi
[[ -z $phase_name ]] || record phase "$phase_name" $((SECONDS - phase_start)) ran

# --- warnings, and the last report -------------------------------------------------------------------
# Our commands' stderr (and the trainers' logs, which hold theirs); the peer's and torch's own
# Python output (*.peer-err) are not ours to fix, and are reported only.
warnings=$(grep -i -H warn "$logs"/*.err "$work"/runs/run-all-*/*/train.log 2>/dev/null | head -n 5 || true)
if [[ -z $warnings ]]; then
  check no-warnings 1 "no line with \"warn\" in the stderr of our commands"
else
  check no-warnings 0 "$(head -n 1 <<<"$warnings") ($(grep -c . <<<"$warnings") line(s) shown in the report)"
  record fact warnings "$warnings"
fi
peer_warnings=$(grep -i -h warn "$logs"/*.peer-err 2>/dev/null | sort -u | head -n 3 || true)
[[ -z $peer_warnings ]] || record fact peer_warnings "$peer_warnings"
record fact finished 1
write_report

if ((${#failures[@]})); then
  echo "gpu-check: FAILED ${#failures[@]} check(s): ${failures[*]}; report $out/report.md"
  exit 1
fi
echo "gpu-check: passed $(grep -c '^check' "$records") checks in $((SECONDS - started))s; report $out/report.md"
