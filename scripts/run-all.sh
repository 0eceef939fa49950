#!/usr/bin/env bash
# Train the experiments of a study (the blog's five by default; each once, or with several
# seeds), several at once on the GPUs libtorch sees, then write the report of the study, with
# its figures. Every run resumes where it stopped; one Ctrl-C stops them all with a checkpoint.
# `scripts/run-all.sh --help` explains every option.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${RESNEXT_BIN:-$ROOT/target/release/resnext}

usage() {
  cat <<EOF
Usage: scripts/run-all.sh [options] [-- resnext-train-options...]

Trains the experiments of a study (\`resnext study\` lists the studies; default: blog, the
blog's five), each with \`resnext train STUDY/EXPERIMENT --resume\`, then writes the study's
report with \`resnext report\`: RESULTS/report.md and report.json (each claim of the study with
its verdict) and the study's figures in RESULTS/figures/. A rerun resumes every run where it
stopped (finished runs are left as they are).

Options:
  --study NAME       the study to train: a name or a study's folder (default blog).
  --device cuda|cpu  cuda (default): every GPU that libtorch sees (\`resnext info --gpus\`, so
                     CUDA_VISIBLE_DEVICES selects them), in libtorch's order. Exits with an
                     error when it sees none. cpu: trains on the CPU.
  --per-gpu N        runs trained at once on each GPU (default 1); the next experiment starts
                     when one ends. With --device cpu: runs at once on the CPU, the cores split
                     between them (default 1).
  --only A,B         train only these experiments of the study.
  --seeds N          train every experiment N times, run k (0 to N-1) with \`resnext train
                     --repeat k\`: the config's seed + 1000 k, so that no two runs of the study
                     share a seed; into RESULTS/<experiment>/seed-<k>/ (one run folder each; the
                     report then gives mean and spread, and can test the claims). Without it,
                     one run per experiment with the config's seed, in RESULTS/<experiment>/. Do
                     not pass --seed after -- with it.
  --results DIR      run folders go to DIR/<experiment>/, each with its log train.log, and
                     the report to DIR/report.md (default results/<study>).
  -h, --help         this text.
  -- ARGS...         everything after -- is passed to every \`resnext train\`,
                     e.g. -- --epochs 2 --train-limit 4096 --precision bf16.

Output: one line when each run starts and one when it ends (the runs' own output, with their
progress, is in their train.log); at the end the report (with its figures) and the verdicts of
the claims it could check, then one line per run with its status: finished, interrupted (rerun to
resume), failed (with the log to read) or not started.

Ctrl-C (or SIGINT/SIGTERM/SIGHUP to this script): every run stops after its current step and
writes a checkpoint, nothing new starts, the report is written (its claims "incomplete"), and
the script exits. A second
Ctrl-C makes the runs quit at once, without a checkpoint (the one of the last epoch stays).

Exit status: 0 when every run finished; 1 when one failed (or the report could not be
written); 130 when one was interrupted or not started; 2 for bad options.

Paths are relative to the current folder. RESNEXT_BIN overrides the binary
(default: target/release/resnext in this repository).
EOF
}

die() {
  echo "run-all: $*" >&2
  exit 2
}

now() { date +%H:%M:%S; }

# "1h02m03s" from a number of seconds.
duration() {
  local s=$1
  if ((s >= 3600)); then
    printf '%dh%02dm%02ds' $((s / 3600)) $((s % 3600 / 60)) $((s % 60))
  else
    printf '%dm%02ds' $((s / 60)) $((s % 60))
  fi
}

# --- options ---------------------------------------------------------------------------------
study=blog
device=cuda
per_gpu=1
only=""
seeds=""
results=""
train_args=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --study) study=${2-}; shift 2 || die "--study needs a name" ;;
    --device) device=${2-}; shift 2 || die "--device needs a value: cuda or cpu" ;;
    --per-gpu) per_gpu=${2-}; shift 2 || die "--per-gpu needs a number" ;;
    --only) only=${2-}; shift 2 || die "--only needs a comma-separated list of experiments" ;;
    --seeds) seeds=${2-}; shift 2 || die "--seeds needs a number" ;;
    --results) results=${2-}; shift 2 || die "--results needs a folder" ;;
    --) shift; train_args=("$@"); break ;;
    *) die "unknown option '$1' (see --help; options for resnext train go after --)" ;;
  esac
done
[[ $device == cuda || $device == cpu ]] || die "--device must be cuda or cpu, not '$device'"
[[ $per_gpu =~ ^[1-9][0-9]*$ ]] || die "--per-gpu must be a positive whole number, not '$per_gpu'"
[[ -n $study ]] || die "--study needs a name"
results=${results:-results/${study##*/}}
if [[ -n $seeds ]]; then
  [[ $seeds =~ ^[1-9][0-9]*$ ]] || die "--seeds must be a positive whole number, not '$seeds'"
  for arg in "${train_args[@]}"; do
    [[ $arg != --seed && $arg != --seed=* && $arg != seed=* && $arg != --set=seed=* ]] ||
      die "--seeds gives each run its seed (the config's + 1000 k): do not pass '$arg' after --"
  done
fi
[[ -x $BIN ]] || die "the resnext binary $BIN does not exist: run 'make build' (or set RESNEXT_BIN)"
# The binary runs here (a bundle's launcher refuses a libtorch it was not built against, in one
# line): said once, before any run starts.
if ! answer=$("$BIN" --version 2>&1); then
  echo "run-all: $BIN does not run here: $answer" >&2
  exit 1
fi

# The study's experiments, from the binary (it knows the built-in studies and the working
# folder's); an unknown study is an error that lists the known ones.
if ! listed=$("$BIN" study "$study" --names 2>&1); then
  echo "run-all: --study: ${listed#error: }" >&2
  exit 2
fi
mapfile -t experiments <<<"$listed"
if [[ -n $only ]]; then
  IFS=, read -r -a wanted <<<"$only"
  declare -A seen=()
  for exp in "${wanted[@]}"; do
    [[ " ${experiments[*]} " == *" $exp "* ]] ||
      die "--only: the study $study has no experiment named '$exp' (its experiments: ${experiments[*]})"
    [[ -z ${seen[$exp]-} ]] || die "--only: '$exp' is listed twice"
    seen[$exp]=1
  done
  ((${#wanted[@]})) || die "--only needs at least one experiment"
  experiments=("${wanted[@]}")
fi

# --- where the runs go: one slot per concurrent run, each with its device -----------------------
slot_device=() # slot -> the --device of the runs started in it
slot_cpus=()   # slot -> the CPU list its runs are pinned to (CPU only; empty = no pinning)
if [[ $device == cuda ]]; then
  # libtorch's count, not nvidia-smi's: it honours CUDA_VISIBLE_DEVICES and its indices are
  # the ones --device cuda:N means.
  if ! gpus=$("$BIN" info --gpus 2>&1); then
    echo "run-all: '$BIN info --gpus' failed:" >&2
    echo "$gpus" >&2
    exit 1
  fi
  if ! [[ $gpus =~ ^[0-9]+$ ]] || ((gpus == 0)); then
    echo "run-all: libtorch sees no CUDA GPU (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>});" \
      "'$BIN info' says what it sees and why." >&2
    echo "run-all: to train on the CPU instead, add --device cpu (my_resnext takes about 25 minutes per epoch on 2 cores)." >&2
    exit 1
  fi
  # Slot s runs on GPU s % gpus, so the first runs spread over all GPUs.
  for ((s = 0; s < gpus * per_gpu; s++)); do
    slot_device+=("cuda:$((s % gpus))")
    slot_cpus+=("")
  done
  where="$gpus GPU(s), $per_gpu run(s) per GPU"
else
  # Each run uses one libtorch thread per core it may run on: concurrent runs get disjoint
  # cores (taskset), since OpenMP threads fighting over the same cores slow down many times.
  mapfile -t cpus < <(taskset -pc $$ 2>/dev/null | sed 's/.*: //' | tr ',' '\n' |
    awk -F- '{ if (NF == 2) for (i = $1; i <= $2; i++) print i; else if ($1 != "") print $1 }')
  for ((s = 0; s < per_gpu; s++)); do
    slot_device+=(cpu)
    if ((per_gpu > 1 && ${#cpus[@]} > 0)); then
      share=()
      for ((c = s; c < ${#cpus[@]}; c += per_gpu)); do share+=("${cpus[c]}"); done
      ((${#share[@]})) || share=("${cpus[s % ${#cpus[@]}]}")
      slot_cpus+=("$(IFS=,; echo "${share[*]}")")
    else
      slot_cpus+=("")
    fi
  done
  where="the CPU, $per_gpu run(s) at once"
fi

# --- the runs: one per experiment, or one per experiment and seed ----------------------------------
# A run is named by its folder under --results: "demo", or "demo/seed-1".
runs=()
declare -A run_repeat=() # run -> its --repeat k (with --seeds)
for exp in "${experiments[@]}"; do
  if [[ -z $seeds ]]; then
    runs+=("$exp")
  else
    for ((k = 0; k < seeds; k++)); do
      runs+=("$exp/seed-$k")
      run_repeat[$exp/seed-$k]=$k
    done
  fi
done

# --- state -------------------------------------------------------------------------------------
declare -A status=()     # run -> finished | interrupted | failed | not started
declare -A detail=()     # run -> what to say about it at the end
declare -A pid_exp=()    # pid of a running trainer -> its run
declare -A pid_slot=()   # pid -> its slot
declare -A pid_start=()  # pid -> start time (seconds)
declare -A pid_offset=() # pid -> size of its log when it started (its own output follows)
free_slots=()
for ((s = 0; s < ${#slot_device[@]}; s++)); do free_slots+=("$s"); done
queue=("${runs[@]}")
stopping=0

log_of() { echo "$results/$1/train.log"; }

# Starts the next run of the queue in slot $1.
start_next() {
  local slot=$1 exp=${queue[0]} log pid
  queue=("${queue[@]:1}")
  log=$(log_of "$exp")
  mkdir -p "$results/$exp"
  local repeat_args=()
  [[ -z ${run_repeat[$exp]-} ]] || repeat_args=(--repeat "${run_repeat[$exp]}")
  local cmd=("$BIN" train "$study/${exp%%/*}" --device "${slot_device[slot]}" --resume
    --out "$results/$exp" "${repeat_args[@]}" "${train_args[@]}")
  [[ -z ${slot_cpus[slot]} ]] || cmd=(taskset -c "${slot_cpus[slot]}" "${cmd[@]}")
  local offset
  offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
  printf '\n=== %s run-all: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "${cmd[*]}" >>"$log"
  # Job control (set -m) gives each trainer its own process group: a Ctrl-C in the terminal
  # then reaches this script alone, which passes exactly one SIGINT on to each trainer (two
  # would make it quit without its checkpoint). It also keeps SIGINT's default action for the
  # trainer, where a shell without job control would make background jobs ignore it.
  "${cmd[@]}" </dev/null >>"$log" 2>&1 &
  pid=$!
  pid_exp[$pid]=$exp
  pid_slot[$pid]=$slot
  pid_start[$pid]=$SECONDS
  pid_offset[$pid]=$offset
  local pinned=""
  [[ -z ${slot_cpus[slot]} ]] || pinned=", CPUs ${slot_cpus[slot]}"
  echo "[$(now)] started  $exp on ${slot_device[slot]}$pinned (log $log)"
}

# (These two run from the signal traps.)
# shellcheck disable=SC2317
# Has trainer $1 printed, since it started, that it got an interrupt?
got_interrupt() {
  local pid=$1
  tail -c +$((pid_offset[$pid] + 1)) "$(log_of "${pid_exp[$pid]}")" 2>/dev/null | grep -q '^interrupt: '
}

# shellcheck disable=SC2317
# SIGINT/SIGTERM/SIGHUP: stop every running trainer with its checkpoint, start nothing new.
on_signal() {
  local sig=$1 pid
  if ((stopping)); then
    echo "[$(now)] $sig again: the runs quit at once, without a checkpoint" >&2
    for pid in "${!pid_exp[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    return
  fi
  stopping=1
  echo "[$(now)] $sig: stopping ${#pid_exp[@]} run(s) after their current step, with a checkpoint; nothing new starts (again to quit at once)" >&2
  # A trainer may have got the signal too (a signal to the whole job, e.g. from a batch
  # system): it says so in its log at once. Give it a moment, then send SIGINT to the others.
  for _ in 1 2 3 4 5; do
    local waiting=0
    for pid in "${!pid_exp[@]}"; do got_interrupt "$pid" || waiting=1; done
    ((waiting)) || break
    sleep 0.2
  done
  for pid in "${!pid_exp[@]}"; do
    got_interrupt "$pid" || kill -INT "$pid" 2>/dev/null || true
  done
}
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM
trap 'on_signal SIGHUP' HUP

# Records how trainer $1 ended, with exit status $2.
finish() {
  local pid=$1 rc=$2 exp=${pid_exp[$1]} log took last
  log=$(log_of "$exp")
  took=$(duration $((SECONDS - pid_start[$pid])))
  # The last epoch line ("epoch 3/4: loss ... val_accuracy ...") says how far it got.
  last=$(tail -c +$((pid_offset[$pid] + 1)) "$log" | grep -E '^epoch [0-9]+/[0-9]+: ' | tail -n 1 || true)
  case $rc in
    0)
      status[$exp]=finished
      detail[$exp]="$results/$exp"
      ;;
    130 | 143 | 129)
      # 130: the trainer stopped on an interrupt (or was killed by SIGINT before it could
      # install its handler, at start-up, with nothing to save).
      status[$exp]=interrupted
      detail[$exp]="rerun to resume (log $log)"
      ;;
    *)
      status[$exp]=failed
      local why
      # Its error line (another process may be writing to the same log: a second trainer of
      # the run, refused), else its last line.
      why=$(tail -c +$((pid_offset[$pid] + 1)) "$log" | grep '^error: ' | tail -n 1 || true)
      [[ -n $why ]] || why=$(tail -c +$((pid_offset[$pid] + 1)) "$log" | grep -v '^\s*$' | tail -n 1 || true)
      detail[$exp]="exit status $rc: ${why:-no output} (log $log)"
      ;;
  esac
  if [[ ${status[$exp]} == finished ]]; then
    echo "[$(now)] finished $exp after $took${last:+: $last}"
  else
    echo "[$(now)] ${status[$exp]} $exp after $took${last:+ (last epoch: $last)}"
  fi
  free_slots+=("${pid_slot[$pid]}")
  unset "pid_exp[$pid]" "pid_slot[$pid]" "pid_start[$pid]" "pid_offset[$pid]"
}

# --- run ---------------------------------------------------------------------------------------
if [[ -z $seeds ]]; then
  echo "run-all: study $study, ${#experiments[@]} experiment(s) (${experiments[*]}) on $where; runs in $results/<experiment>/, logs in $results/<experiment>/train.log"
else
  echo "run-all: study $study, ${#experiments[@]} experiment(s) (${experiments[*]}) x $seeds seeds on $where; runs in $results/<experiment>/seed-<k>/, logs in their train.log"
fi
mkdir -p "$results"
set -m
while true; do
  while ((!stopping && ${#queue[@]} && ${#free_slots[@]})); do
    start_next "${free_slots[0]}"
    free_slots=("${free_slots[@]:1}")
  done
  ((${#pid_exp[@]})) || break
  # wait -n returns when a trainer ends, or early (status > 128, no pid) when a trapped signal
  # arrives; the trap has then run, and the loop waits again.
  done_pid=""
  rc=0
  wait -n -p done_pid || rc=$?
  if [[ -n ${done_pid-} && -n ${pid_exp[${done_pid-}]-} ]]; then
    finish "$done_pid" "$rc"
  fi
done
set +m
for exp in "${queue[@]}"; do
  status[$exp]="not started"
  detail[$exp]="stopped before its turn: rerun to train it"
done

# --- report and summary -----------------------------------------------------------------------
# The report of the study's runs (its own figures in RESULTS/figures/), and the verdicts of the
# claims it could check.
report_ok=1
if "$BIN" report "$results" --study "$study" >"$results/report.log" 2>&1; then
  echo "[$(now)] report: $results/report.md and report.json (log $results/report.log)"
  grep -E '^(holds|does not hold|cannot tell|not enough runs|runs incomplete) ' "$results/report.log" | sed 's/^/  /' || true
else
  report_ok=0
  echo "run-all: resnext report failed: $(tail -n 1 "$results/report.log") (log $results/report.log)" >&2
fi

echo "run-all: summary"
rc=0
width=18 # the longest run name, at least 18 (seed runs are named <experiment>/seed-<k>)
for exp in "${runs[@]}"; do ((${#exp} <= width)) || width=${#exp}; done
for exp in "${runs[@]}"; do
  printf '  %-*s %-12s %s\n' "$width" "$exp" "${status[$exp]}" "${detail[$exp]}"
  case ${status[$exp]} in
    finished) ;;
    failed) rc=1 ;;
    *) ((rc == 1)) || rc=130 ;;
  esac
done
((report_ok)) || rc=1
exit "$rc"
