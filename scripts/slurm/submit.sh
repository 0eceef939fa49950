#!/usr/bin/env bash
# Submits the training array (run-all.sbatch, one run per task) and a job that draws the figures
# and writes the report (plots.sbatch) once every task has ended, however it ended (afterany).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BLOG_EXPERIMENTS="my_resnext resnext my_resnext_lr my_resnext_lr_v2 my_resnext_lr_r"

usage() {
  cat <<'EOF'
Usage: scripts/slurm/submit.sh [sbatch options for the training tasks...]

Submits scripts/slurm/run-all.sbatch as a job array, one task per run (per experiment, or per
experiment and seed with SEEDS), each task `resnext train <experiment> --resume` on one GPU
(--gres=gpu:1), then scripts/slurm/plots.sbatch, which runs `resnext plot` and `resnext report`
when the whole array has ended (--dependency=afterany:<array job>).
Prints both job ids. Options given here go to the training array only, after the script's
own #SBATCH lines, so they override them (e.g. --time=24:00:00 --partition=gpu --gres=gpu:a100:1);
for options of both jobs (account, partition) set SBATCH_ACCOUNT, SBATCH_PARTITION, ...

Environment:
  EXPERIMENTS  names or JSON paths, separated by spaces or commas (default: the five blog
               experiments); the array has one task per entry
  SEEDS        N: every experiment N times (seeds config + 0 ... config + N-1) into
               RESULTS/<experiment>/seed-<k>/, one task each, as run-all.sh --seeds N; unset:
               one run per experiment in RESULTS/<experiment>/
  TRAIN_ARGS   extra options for every `resnext train` (e.g. "--epochs 100 --precision bf16")
  RESULTS      run folders (default results); PLOTS: the figures (default plots)
  LOG_DIR      SLURM logs, one per task: LOG_DIR/resnext-<array job>_<task>.log and
               LOG_DIR/resnext-plots-<job>.log (default logs)
  DEVICE       --device for train (default cuda)
  RESNEXT_BIN  the binary (default target/release/resnext)
  SBATCH       the sbatch command (default sbatch)

Check on the jobs with squeue --me; a task's progress is in RESULTS/<experiment>/train.log.
Submitting again continues every run from its checkpoint.
EOF
}

die() {
  echo "submit: $*" >&2
  exit 1
}

[[ ${1-} != -h && ${1-} != --help ]] || { usage; exit 0; }
cd "$ROOT"
SBATCH=${SBATCH:-sbatch}
command -v "$SBATCH" >/dev/null || die "$SBATCH not found: run this on a SLURM login node"
BIN=${RESNEXT_BIN:-target/release/resnext}
[[ -x $BIN ]] || die "the resnext binary $BIN does not exist: build it (make build) or set RESNEXT_BIN"
RESULTS=${RESULTS:-results}
PLOTS=${PLOTS:-plots}
LOG_DIR=${LOG_DIR:-logs}
export EXPERIMENTS=${EXPERIMENTS:-$BLOG_EXPERIMENTS} RESULTS
SEEDS=${SEEDS-}
[[ -z $SEEDS || $SEEDS =~ ^[1-9][0-9]*$ ]] || die "SEEDS must be a positive whole number, not '$SEEDS'"
export SEEDS

# Check every experiment here, not an hour later in the queue.
IFS=', ' read -r -a experiments <<<"$EXPERIMENTS"
((${#experiments[@]})) || die "EXPERIMENTS is empty"
for exp in "${experiments[@]}"; do
  if [[ $exp == */* || $exp == *.json ]]; then
    [[ -f $exp ]] || die "EXPERIMENTS: $exp does not exist"
  else
    [[ -f experiments/$exp.json ]] || die "EXPERIMENTS: no experiment named '$exp' in experiments/"
  fi
done

# SLURM does not create the log folder: a task whose log cannot be opened fails silently.
mkdir -p "$LOG_DIR" "$RESULTS"
tasks=$((${#experiments[@]} * ${SEEDS:-1}))
array=$("$SBATCH" --parsable --chdir="$ROOT" --array="0-$((tasks - 1))" \
  --output="$LOG_DIR/%x-%A_%a.log" "$@" scripts/slurm/run-all.sbatch)
array=${array%%;*} # --parsable prints "id" or "id;cluster"
echo "submitted the training array: job $array, $tasks task(s): ${experiments[*]}${SEEDS:+ x $SEEDS seeds}"

# The figures and the report, once every task has ended (plots.sbatch reads EXPERIMENTS,
# RESULTS, PLOTS).
export PLOTS
plots=$("$SBATCH" --parsable --chdir="$ROOT" --dependency="afterany:$array" --output="$LOG_DIR/%x-%j.log" \
  scripts/slurm/plots.sbatch)
plots=${plots%%;*}
echo "submitted the figures: job $plots (after job $array ends), into $PLOTS/, and the report $RESULTS/report.md"
echo "logs in $LOG_DIR/; progress of each run in $RESULTS/<experiment>/train.log"
