#!/usr/bin/env bash
# Submits the training array (run-all.sbatch, one run per task) and a job that writes the report
# with its figures (report.sbatch) once every task has ended, however it ended (afterany).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

usage() {
  cat <<'EOF'
Usage: scripts/slurm/submit.sh [sbatch options for the training tasks...]

Submits scripts/slurm/run-all.sbatch as a job array, one task per run (per experiment of the
study, or per experiment and seed with SEEDS), each task `resnext train STUDY/<experiment>
--resume` on one GPU (--gres=gpu:1), then scripts/slurm/report.sbatch, which runs `resnext
report` (the report and the study's figures) when the whole array has ended
(--dependency=afterany:<array job>).
Prints both job ids. Options given here go to the training array only, after the script's
own #SBATCH lines, so they override them (e.g. --time=24:00:00 --partition=gpu --gres=gpu:a100:1);
for options of both jobs (account, partition) set SBATCH_ACCOUNT, SBATCH_PARTITION, ...

Environment:
  STUDY        the study to train (default blog: the blog's five experiments); `resnext study`
               lists them
  EXPERIMENTS  names of some of its experiments, separated by spaces or commas (default: all);
               the array has one task per entry
  SEEDS        N: every experiment N times (--repeat k: seeds config + 1000 k, k = 0 ... N-1)
               into RESULTS/<experiment>/seed-<k>/, one task each, as run-all.sh --seeds N;
               unset: one run per experiment in RESULTS/<experiment>/
  TRAIN_ARGS   extra options for every `resnext train` (e.g. "--epochs 100 --precision bf16")
  RESULTS      run folders and the report (default results/<study>)
  LOG_DIR      SLURM logs, one per task: LOG_DIR/resnext-<array job>_<task>.log and
               LOG_DIR/resnext-report-<job>.log (default logs)
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
STUDY=${STUDY:-blog}
RESULTS=${RESULTS:-results/${STUDY##*/}}
LOG_DIR=${LOG_DIR:-logs}
# The study's experiments, from the binary (an unknown study is an error listing the known ones).
listed=$("$BIN" study "$STUDY" --names 2>&1) || die "STUDY: ${listed#error: }"
mapfile -t known <<<"$listed"
export STUDY RESULTS EXPERIMENTS=${EXPERIMENTS:-${known[*]}}
SEEDS=${SEEDS-}
[[ -z $SEEDS || $SEEDS =~ ^[1-9][0-9]*$ ]] || die "SEEDS must be a positive whole number, not '$SEEDS'"
export SEEDS

# Check every experiment here, not an hour later in the queue.
IFS=', ' read -r -a experiments <<<"$EXPERIMENTS"
((${#experiments[@]})) || die "EXPERIMENTS is empty"
for exp in "${experiments[@]}"; do
  [[ " ${known[*]} " == *" $exp "* ]] || die "EXPERIMENTS: the study $STUDY has no experiment named '$exp' (its experiments: ${known[*]})"
done

# SLURM does not create the log folder: a task whose log cannot be opened fails silently.
mkdir -p "$LOG_DIR" "$RESULTS"
tasks=$((${#experiments[@]} * ${SEEDS:-1}))
array=$("$SBATCH" --parsable --chdir="$ROOT" --array="0-$((tasks - 1))" \
  --output="$LOG_DIR/%x-%A_%a.log" "$@" scripts/slurm/run-all.sbatch)
array=${array%%;*} # --parsable prints "id" or "id;cluster"
echo "submitted the training array: job $array, $tasks task(s): ${experiments[*]}${SEEDS:+ x $SEEDS seeds}"

# The report and its figures, once every task has ended (report.sbatch reads STUDY and RESULTS).
report=$("$SBATCH" --parsable --chdir="$ROOT" --dependency="afterany:$array" --output="$LOG_DIR/%x-%j.log" \
  scripts/slurm/report.sbatch)
report=${report%%;*}
echo "submitted the report: job $report (after job $array ends): $RESULTS/report.md and its figures in $RESULTS/figures/"
echo "logs in $LOG_DIR/; progress of each run in $RESULTS/<experiment>/train.log"
