#!/usr/bin/env bash
# The first command to run on a GPU machine (about 6-8 minutes on one H200, no network): what
# libtorch sees, our speed against the PyTorch peer in fp32 and bf16, a bf16 training run stopped
# by SIGINT and resumed, the export checked in Python on the device, and run-all with five runs
# on one GPU against one alone. Writes results/gpu-check/report.md and report.json; exits
# non-zero when any check fails. `--help` says more.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BLOG_EXPERIMENTS=(my_resnext resnext my_resnext_lr my_resnext_lr_v2 my_resnext_lr_r)

usage() {
  cat <<'EOF'
Usage: scripts/gpu-check.sh [--device cuda|cpu] [--quick] [--peer PATH] [--data-dir DIR] [--out DIR]

The one command to run first on a GPU machine. Every step uses the same device:
  1. `resnext info` (found through python3's torch when the binary's libtorch path does not
     resolve, e.g. when it was built on another machine);
  2. `resnext bench` and the PyTorch peer (bench/torch_peer.py), training and evaluation, fp32
     and bf16, alternating ours/peer, two rounds (one with --quick);
  3. `resnext train my_resnext` for 2 epochs in bf16, stopped by SIGINT in the middle of the
     first epoch, then `--resume`d: each epoch exactly once in metrics.csv;
  4. `resnext eval` and `resnext export` of that run, and in python3 (with torch) on the device:
     `torch.jit.load` the export, classify the test images with its mean/std, and compare the
     accuracy and logits with `resnext eval`'s;
  5. `scripts/run-all.sh --per-gpu 5` over the five blog experiments for one epoch on one GPU,
     and my_resnext alone: aggregate images/s against one run's.
It fails when a command fails, when a training run prints per step (more than a few lines per
epoch), or when any line of our commands' stderr contains "warn" (any case).

Options:
  --device cuda|cpu  cuda (default): the first GPU libtorch sees (CUDA_VISIBLE_DEVICES selects
                     it); cpu: the same checks on the CPU (slow without --quick)
  --quick            tiny sizes everywhere (demo instead of my_resnext, a few hundred images,
                     --set model.width=2 for the blog networks, few bench steps): every step in
                     about 2-3 minutes on a 2-core CPU; the speeds it measures mean nothing
  --peer PATH        the PyTorch peer script (default bench/torch_peer.py)
  --data-dir DIR     CIFAR-10 binary folder (default $CIFAR10_DIR, else data/cifar-10-batches-bin).
                     Batch files may be .bin or .bin.xz; when training batches are missing the
                     ones present are used in their place, and every accuracy is labelled so
  --out DIR          where the report and all logs go (default results/gpu-check)
  --train-limit N    train steps 3 and 5 on the first N training images only (a shorter rerun
                     when the first run took too long; the epoch speeds stay comparable)
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
peer=""
data_dir=${CIFAR10_DIR:-data/cifar-10-batches-bin}
out=results/gpu-check
train_limit=""
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --device) device=${2-}; shift 2 || die "--device needs cuda or cpu" ;;
    --quick) quick=1; shift ;;
    --peer) peer=${2-}; shift 2 || die "--peer needs a path" ;;
    --data-dir) data_dir=${2-}; shift 2 || die "--data-dir needs a folder" ;;
    --out) out=${2-}; shift 2 || die "--out needs a folder" ;;
    --train-limit) train_limit=${2-}; shift 2 || die "--train-limit needs a number" ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ $device == cuda || $device == cpu ]] || die "--device must be cuda or cpu, not '$device'"
[[ -z $train_limit || $train_limit =~ ^[1-9][0-9]*$ ]] || die "--train-limit must be a positive number, not '$train_limit'"
[[ -z $train_limit ]] || ((!quick)) || die "--train-limit is for a full check: --quick has its own tiny sizes"
# Paths given relative to the caller's folder; then everything runs from the repository root
# (experiment names are read from experiments/).
abs() { realpath -m -- "$1"; }
out=$(abs "$out")
data_dir=$(abs "$data_dir")
[[ -z $peer ]] || peer=$(abs "$peer")
BIN=$(abs "${RESNEXT_BIN:-$ROOT/target/release/resnext}")
export RESNEXT_BIN=$BIN
cd "$ROOT"
[[ -x $BIN ]] || die "the resnext binary $BIN does not exist: run 'make build' (or set RESNEXT_BIN)"
peer=${peer:-$ROOT/bench/torch_peer.py}
[[ -f $peer ]] || die "the PyTorch peer $peer was not found: pass --peer PATH"
command -v python3 >/dev/null || die "python3 not found: it runs the peer and the export check (it needs torch)"

# A previous check's folder is replaced; any other folder with files in it is left alone.
if [[ -d $out && -n $(ls -A "$out") && ! -f $out/records.tsv ]]; then
  die "--out $out holds other files (no records.tsv of an earlier gpu-check): choose another folder"
fi
rm -rf "$out"
mkdir -p "$out/logs"
logs=$out/logs
records=$out/records.tsv
: >"$records"
failures=()
started=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- sizes ---------------------------------------------------------------------------------------
if ((quick)); then
  limit_s=180 # per command
  bench_rounds=1
  # Ours on the blog network made narrow; the peer has a fixed size, so it runs a batch or two.
  bench_ours=(my_resnext --set model.width=2)
  train_bench=(--batch 16 --steps 1 --warmup 1)
  train_bench_bf16=(--batch 8 --steps 1 --warmup 1)
  eval_bench=(--batch 16 --steps 1 --warmup 1)
  peer_train=(--batch 1 --steps 1 --warmup 0)
  peer_train_bf16=("${peer_train[@]}")
  peer_eval=(--batch 2 --steps 1 --warmup 0)
  peer_eval_bf16=("${peer_eval[@]}")
  check_exp=demo
  # --set only when the run starts: --resume refuses --set, even unchanged.
  check_set=(--set model.width=2 --set batch_size=32)
  check_args=(--train-limit 256 --test-limit 200)
  eval_limit=200
  run_all_args=(--epochs 1 --set model.width=2 --train-limit 256 --test-limit 100)
  if [[ $device == cuda ]]; then
    # An epoch on a GPU is over in a blink: make it long enough to be interrupted.
    check_set=()
    check_args=(--train-limit 10000 --test-limit 1000 --sync-every 10)
    eval_limit=1000
  fi
else
  limit_s=600
  bench_rounds=2
  bench_ours=(my_resnext)
  train_bench=(--batch 64 --steps 50 --warmup 10)
  train_bench_bf16=("${train_bench[@]}")
  eval_bench=(--batch 1000 --steps 10 --warmup 3)
  peer_train=("${train_bench[@]}")
  peer_train_bf16=("${train_bench[@]}")
  peer_eval=("${eval_bench[@]}")
  peer_eval_bf16=("${eval_bench[@]}")
  check_exp=my_resnext
  check_set=()
  check_args=()
  eval_limit=10000
  run_all_args=(--epochs 1)
  if [[ $device == cpu ]]; then
    train_bench=(--batch 64 --steps 5 --warmup 1) train_bench_bf16=("${train_bench[@]}")
    eval_bench=(--batch 256 --steps 5 --warmup 1)
    peer_train=("${train_bench[@]}") peer_train_bf16=("${train_bench[@]}")
    peer_eval=("${eval_bench[@]}") peer_eval_bf16=("${eval_bench[@]}")
  fi
fi
if [[ -n $train_limit ]]; then
  check_args+=(--train-limit "$train_limit")
  run_all_args+=(--train-limit "$train_limit")
fi
threads=$(nproc)
peer_flags=(--device "$device" --threads "$threads")
[[ $device == cpu ]] && peer_flags+=(--channels-last) # the peer's fastest CPU setting

# --- helpers -------------------------------------------------------------------------------------
say() { echo "[gpu-check $(date +%H:%M:%S)] $*"; }

# phase NAME: the previous phase ends here (its seconds go to the report), NAME begins.
phase_name=""
phase_start=$SECONDS
phase() {
  [[ -z $phase_name ]] || record phase "$phase_name" $((SECONDS - phase_start))
  phase_name=$1
  phase_start=$SECONDS
}

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

# ours NAME CMD...: runs one of our commands with a time limit, stdout and stderr to
# logs/NAME.out and logs/NAME.err (scanned for warnings at the end); returns its status.
ours() {
  local name=$1
  shift
  timeout --signal=INT --kill-after=30 "$limit_s" "$@" >"$logs/$name.out" 2>"$logs/$name.err"
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

# --- 1. libtorch and the device -------------------------------------------------------------------
phase info
say "1/5 resnext info"
info_rc=0
ours info "$BIN" info || info_rc=$?
if ((info_rc)) && grep -q "error while loading shared libraries" "$logs/info.err"; then
  # Built elsewhere: its rpath names that machine's venv. python3's torch has the same libraries.
  torch_lib=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)
  [[ -n $torch_lib ]] || { cat "$logs/info.err" >&2; die "libtorch not found, and python3 has no torch to find it with"; }
  export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  record fact ld_library_path "$torch_lib"
  say "libtorch not found through the binary's rpath: using python3's torch, LD_LIBRARY_PATH=$torch_lib"
  info_rc=0
  ours info "$BIN" info || info_rc=$?
fi
cat "$logs/info.out"
check info $((info_rc == 0)) "resnext info exited with status $info_rc"
((info_rc == 0)) || { cat "$logs/info.err" >&2; exit 1; }
if [[ $device == cuda ]]; then
  if grep -q '^CUDA available: true' "$logs/info.out"; then
    check cuda-available 1 "$(grep -m1 -E '^  cuda:0: ' "$logs/info.out" | sed 's/^ *//')"
  else
    check cuda-available 0 "libtorch sees no CUDA device (see resnext info above); use --device cpu for a CPU check"
  fi
fi
gpu_line=$(grep -m1 -E '^  cuda:0: ' "$logs/info.out" | sed 's/^  cuda:0: //' || true)
record fact gpu "${gpu_line%%,*}"
record fact gpu_detail "$gpu_line"
record fact driver "$(sed -n 's/^NVIDIA driver: //p' "$logs/info.out")"
record fact libtorch "$(sed -n 's/^libtorch: //p' "$logs/info.out")"
record fact cpu "$(sed -n 's/^CPU: //p' "$logs/info.out")"
if command -v nvidia-smi >/dev/null; then
  record fact nvidia_smi "$(nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader 2>&1 | paste -sd';')"
fi
# run-all below is measured on one GPU: the first that CUDA_VISIBLE_DEVICES leaves.
one_gpu=${CUDA_VISIBLE_DEVICES:-0}
one_gpu=${one_gpu%%,*}

# --- data: the full CIFAR-10, or what there is of it ------------------------------------------------
# Batch files may come xz-compressed (GPU machines get files in small transfers): unpacked into a
# temporary folder; missing training batches are replaced by the ones present.
prepare_data() {
  local dir=$1 name present=() missing=()
  local data=$tmp/cifar
  mkdir -p "$data"
  for name in test_batch data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5; do
    if [[ -f $dir/$name.bin ]]; then
      ln -s "$dir/$name.bin" "$data/$name.bin"
    elif [[ -f $dir/$name.bin.xz ]]; then
      if command -v xz >/dev/null; then
        xz -dc "$dir/$name.bin.xz" >"$data/$name.bin"
      else
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
          "$dir/$name.bin.xz" "$data/$name.bin"
      fi
    else
      [[ $name == test_batch ]] && die "no test_batch.bin (or .bin.xz) in $dir: pass --data-dir or set CIFAR10_DIR"
      missing+=("$name")
      continue
    fi
    [[ $name == test_batch ]] || present+=("$name")
  done
  ((${#present[@]})) || die "no data_batch_N.bin (or .bin.xz) in $dir: at least one training batch is needed"
  [[ -f $dir/batches.meta.txt ]] && ln -s "$dir/batches.meta.txt" "$data/"
  local i=0
  for name in "${missing[@]}"; do
    ln -s "$data/${present[i % ${#present[@]}]}.bin" "$data/$name.bin"
    i=$((i + 1))
  done
  if ((${#missing[@]})); then
    data_note="partial CIFAR-10: ${#present[@]} of 5 training batches (${present[*]}); ${missing[*]} are copies of them"
  else
    data_note="CIFAR-10 from $dir"
  fi
  export CIFAR10_DIR=$data
}
prepare_data "$data_dir"
say "data: $data_note"
record fact data "$data_note"
record fact partial_data "$([[ $data_note == partial* ]] && echo 1 || echo 0)"

# --- 2. speed: ours and the peer, alternating -------------------------------------------------------
phase bench
say "2/5 bench: ours (${bench_ours[*]}) and the peer ($peer), train and eval, fp32 and bf16, $bench_rounds round(s)"
for ((round = 1; round <= bench_rounds; round++)); do
  for mode in train eval; do
    for precision in fp32 bf16; do
      sizes=("${train_bench[@]}")
      peer_sizes=("${peer_train[@]}")
      if [[ $mode == train && $precision == bf16 ]]; then
        sizes=("${train_bench_bf16[@]}")
        peer_sizes=("${peer_train_bf16[@]}")
      elif [[ $mode == eval ]]; then
        sizes=("${eval_bench[@]}")
        peer_sizes=("${peer_eval[@]}")
        [[ $precision == bf16 ]] && peer_sizes=("${peer_eval_bf16[@]}")
      fi
      name=bench-ours-$mode-$precision-r$round
      rc=0
      ours "$name" "$BIN" bench "${bench_ours[@]}" --mode "$mode" --device "$device" --precision "$precision" \
        "${sizes[@]}" || rc=$?
      result=$(last_match "$logs/$name.out" '^RESULT ')
      if ((rc == 0)) && [[ $result =~ median\ ([0-9.]+)\ ms/step,\ ([0-9.]+)\ images/s ]]; then
        ops=$(sed -n 's/^ATen ops per [a-z]*: //p' "$logs/$name.out")
        record bench ours "$mode" "$precision" "$round" "${BASH_REMATCH[2]}" "${BASH_REMATCH[1]}" "${ops:--}" "${sizes[*]}" "${bench_ours[*]}"
        lines=$(wc -l <"$logs/$name.out")
        check "$name" $((lines <= 6)) "${BASH_REMATCH[2]} images/s, ${ops:-?} ATen ops per step ($lines lines of output)"
      else
        check "$name" 0 "exit status $rc: $(tail -n 1 "$logs/$name.err") (log $logs/$name.err)"
      fi
      name=bench-peer-$mode-$precision-r$round
      rc=0
      timeout --kill-after=30 "$limit_s" python3 "$peer" --mode "$mode" --precision "$precision" "${peer_flags[@]}" \
        "${peer_sizes[@]}" >"$logs/$name.out" 2>"$logs/$name.peer-err" || rc=$?
      result=$(last_match "$logs/$name.out" '^RESULT ')
      if ((rc == 0)) && [[ $result =~ median\ ([0-9.]+)\ ms/step,\ ([0-9.]+)\ img/s ]]; then
        record bench peer "$mode" "$precision" "$round" "${BASH_REMATCH[2]}" "${BASH_REMATCH[1]}" - "${peer_sizes[*]}" "ResNeXt-29 8x16d"
        check "$name" 1 "${BASH_REMATCH[2]} images/s"
      else
        check "$name" 0 "exit status $rc: $(tail -n 1 "$logs/$name.peer-err") (log $logs/$name.peer-err)"
      fi
    done
  done
done

# --- 3. bf16 training, interrupted and resumed ------------------------------------------------------
run=$out/train-bf16
phase train
say "3/5 train $check_exp in bf16 for 2 epochs, SIGINT in the first epoch, then --resume ($run)"
train_cmd=("$BIN" train "$check_exp" --device "$device" --precision bf16 --epochs 2 --out "$run" "${check_args[@]}")
start_cmd=("${train_cmd[@]}" "${check_set[@]}")
trained=0
# A background job of a script ignores SIGINT until the trainer installs its handler, which it
# does before its first step: the signal goes after the first progress line.
"${start_cmd[@]}" >"$logs/train-interrupted.out" 2>"$logs/train-interrupted.err" &
pid=$!
deadline=$((SECONDS + limit_s))
while kill -0 "$pid" 2>/dev/null && ! grep -qE '^epoch 1/2 step ' "$logs/train-interrupted.out"; do
  ((SECONDS < deadline)) || break
  sleep 0.1
done
kill -INT "$pid" 2>/dev/null || true
rc=0
wait "$pid" || rc=$?
stopped=$(last_match "$logs/train-interrupted.out" '^interrupted at epoch 0 step ')
if ((rc == 130)) && [[ -n $stopped && -f $run/last.safetensors ]]; then
  check train-sigint 1 "exit status 130: ${stopped%%:*}, checkpoint written"
else
  check train-sigint 0 "exit status $rc (expected 130 with a mid-epoch checkpoint): $(tail -n 2 "$logs/train-interrupted.out" "$logs/train-interrupted.err" | paste -sd' ')"
fi
check_lines train-sigint-output "$logs/train-interrupted.out" 1
rc=0
ours train-resumed "${train_cmd[@]}" --resume || rc=$?
epochs=$(epochs_of "$run")
if ((rc == 0)) && grep -q '^resuming ' "$logs/train-resumed.out" && [[ $epochs == "0 1" ]]; then
  trained=1
  check train-resume 1 "resumed and finished; metrics.csv has epochs $epochs, each once"
else
  check train-resume 0 "exit status $rc, metrics.csv epochs '${epochs}' (expected '0 1'): $(tail -n 1 "$logs/train-resumed.err")"
fi
check_lines train-resume-output "$logs/train-resumed.out" 2
for epoch in 0 1; do
  record train "$epoch" "$(metric "$run" images_per_second "$epoch")" "$(metric "$run" val_accuracy "$epoch")" \
    "$(metric "$run" epoch_seconds "$epoch")"
done
record fact train_command "${start_cmd[*]}"

# --- 4. eval and export, checked in Python on the device -----------------------------------------
phase eval-export
say "4/5 eval and export of $run, and the export in python3 on $device"
if ((trained)); then
  rc=0
  ours eval "$BIN" eval "$run" --device "$device" --precision fp32 --limit "$eval_limit" --logits-json "$out/logits.json" || rc=$?
  # "loss (with L2) 4.5239  cross-entropy 4.1142  accuracy 7.00%"
  eval_acc=$(sed -n 's/^loss .* accuracy \([0-9.]*\)%.*/\1/p' "$logs/eval.out" | head -n 1)
  check eval $((rc == 0 && ${#eval_acc} > 0)) "exit status $rc, test accuracy ${eval_acc:-?}% on $eval_limit images (fp32)"
  rc=0
  ours eval-bf16 "$BIN" eval "$run" --device "$device" --precision bf16 --limit "$eval_limit" || rc=$?
  eval_bf16=$(sed -n 's/^loss .* accuracy \([0-9.]*\)%.*/\1/p' "$logs/eval-bf16.out" | head -n 1)
  check eval-bf16 $((rc == 0 && ${#eval_bf16} > 0)) "exit status $rc, test accuracy ${eval_bf16:-?}% (bf16)"
  rc=0
  ours export "$BIN" export "$run" --out "$run/model.pt" || rc=$?
  exported=0
  [[ -s $run/model.pt && -s $run/model.pt.json ]] && exported=1
  check export $((rc == 0 && exported)) "exit status $rc; model.pt and model.pt.json written: $((exported)) (1 = yes)"
  rc=0
  # fp32 on both sides: PyTorch's default TF32 convolutions on Ampere+ would differ from ours.
  timeout "$limit_s" python3 - "$run/model.pt" "$out/logits.json" "$CIFAR10_DIR" "$eval_limit" "$device" \
    >"$logs/export-python.out" 2>"$logs/export-python.peer-err" <<'PYTHON' || rc=$?
import json, os, sys
import torch
model_path, logits_path, data_dir, n, device = sys.argv[1:6]
n = int(n)
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
meta = json.load(open(model_path + ".json"))
with open(os.path.join(data_dir, "test_batch.bin"), "rb") as f:
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
  check eval 0 "not run: the training run did not finish"
fi

# --- 5. run-all: five runs at once on one GPU, against one alone ------------------------------------
phase run-all
say "5/5 run-all --per-gpu 5 over the five blog experiments for one epoch (${run_all_args[*]}), then my_resnext alone"
run_all() { # NAME run-all-options...
  local name=$1 rc=0 begin=$SECONDS
  shift
  CUDA_VISIBLE_DEVICES=$one_gpu timeout --signal=INT --kill-after=60 $((limit_s * 2)) "$ROOT/scripts/run-all.sh" \
    --device "$device" --results "$out/$name" --plots "$out/$name/plots" "$@" -- "${run_all_args[@]}" \
    >"$logs/$name.out" 2>"$logs/$name.err" || rc=$?
  local wall=$((SECONDS - begin)) exp images=0 sum=0 ok=1
  for exp in "${BLOG_EXPERIMENTS[@]}"; do
    [[ -d $out/$name/$exp ]] || continue
    local ips
    ips=$(metric "$out/$name/$exp" images_per_second 0)
    [[ -n $ips ]] || { ok=0; continue; }
    sum=$(awk -v a="$sum" -v b="$ips" 'BEGIN { print a + b }')
    # "training my_resnext on ...: 50000 train / 10000 test images, ..."
    local n
    n=$(sed -n 's|.*: \([0-9]*\) train / [0-9]* test images.*|\1|p' "$out/$name/$exp/train.log" | tail -n 1)
    images=$((images + ${n:-0}))
    record run_all_run "$name" "$exp" "$ips" "$(metric "$out/$name/$exp" epoch_seconds 0)"
    check_lines "$name-$exp-output" "$out/$name/$exp/train.log" 1
  done
  record run_all "$name" "$sum" "$wall" "$images"
  check "$name" $((rc == 0 && ok)) "exit status $rc in ${wall}s; sum of the runs' images/s: $sum ($(tail -n +2 "$logs/$name.out" | grep -cE '^\[.*\] (started|finished|failed|interrupted) ') start/end lines)"
}
run_all run-all-5 --per-gpu 5
run_all run-all-1 --per-gpu 1 --only my_resnext

phase ""

# --- warnings, and the report ----------------------------------------------------------------------
# Our commands' stderr (and the trainers' logs, which hold theirs); the peer's and torch's own
# Python output (*.peer-err) are not ours to fix, and are reported only.
warnings=$(grep -i -H warn "$logs"/*.err "$out"/run-all-*/*/train.log 2>/dev/null | head -n 5 || true)
if [[ -z $warnings ]]; then
  check no-warnings 1 "no line with \"warn\" in the stderr of our commands"
else
  check no-warnings 0 "$(head -n 1 <<<"$warnings") ($(grep -c . <<<"$warnings") line(s) shown in the report)"
  record fact warnings "$warnings"
fi
peer_warnings=$(grep -i -h warn "$logs"/*.peer-err 2>/dev/null | sort -u | head -n 3 || true)
[[ -z $peer_warnings ]] || record fact peer_warnings "$peer_warnings"

record fact device "$device"
record fact quick "$quick"
record fact seconds $((SECONDS - started))
record fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
record fact host "$(hostname)"
record fact commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
cp "$logs/info.out" "$out/info.txt"
python3 "$ROOT/scripts/gpu-check-report.py" "$out" || check report 0 "scripts/gpu-check-report.py failed"

if ((${#failures[@]})); then
  echo "gpu-check: FAILED ${#failures[@]} check(s): ${failures[*]}; report $out/report.md, logs $logs/"
  exit 1
fi
echo "gpu-check: passed $(grep -c '^check' "$records") checks in $((SECONDS - started))s; report $out/report.md"
