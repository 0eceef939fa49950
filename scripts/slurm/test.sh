#!/usr/bin/env bash
# `make slurm-test`: a one-node SLURM cluster on localhost (munged, slurmctld, slurmd, all in a
# temporary folder, on free ports), the job array of run-all.sbatch submitted by submit.sh with
# the demo study's two experiments as tiny CPU runs, two seeds each (four tasks), and the report
# job after them; then a task stopped by its time-limit signal, which must requeue itself and
# resume. Checks the runs' metrics and seeds, the report, its figures and the logs, and always
# stops the daemons and removes the folder.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export RESNEXT_BIN=${RESNEXT_BIN:-$ROOT/target/release/resnext}
TIMEOUT=${SLURM_TEST_TIMEOUT:-400} # seconds for all the jobs

usage() {
  cat <<'EOF'
Usage: scripts/slurm/test.sh [--keep]

Installs Debian's slurm-wlm and munge when missing (apt-get, as root), starts a one-node
cluster on localhost in a temporary folder, submits scripts/slurm/submit.sh's job array with the
demo study as tiny CPU runs (demo and demo_fast, 1 epoch on 2,000 images) with SEEDS=2 (four
tasks, RESULTS/<experiment>/seed-<k>/) and the report job, then one task (without seeds) that
gets the time-limit signal (SIGUSR1) mid-epoch and must requeue itself and resume. Checks each
run's metrics.csv and seed, report.md, its figures and the logs. Exits non-zero
on any failure, printing the logs. The daemons are stopped and the folder removed in every case.

  --keep   keep the temporary folder (logs, runs) for a look afterwards

Environment: RESNEXT_BIN (default target/release/resnext), CIFAR10_DIR (default
data/cifar-10-batches-bin), SLURM_TEST_TIMEOUT (seconds, default 400).
EOF
}

keep=0
case ${1-} in
  -h | --help) usage; exit 0 ;;
  --keep) keep=1 ;;
  "") ;;
  *) echo "slurm-test: unknown option '$1' (see --help)" >&2; exit 2 ;;
esac

say() { echo "[slurm-test $(date +%H:%M:%S)] $*"; }
fail() {
  echo "[slurm-test] FAILED: $*" >&2
  show_logs >&2
  exit 1
}

# --- prerequisites -------------------------------------------------------------------------------
install_slurm() {
  local missing=()
  for tool in slurmctld slurmd sbatch squeue scontrol munged; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  ((${#missing[@]})) || return 0
  [[ $EUID -eq 0 ]] || { echo "slurm-test: ${missing[*]} missing: run 'apt-get install slurm-wlm munge' as root" >&2; exit 1; }
  say "installing slurm-wlm and munge (missing: ${missing[*]})"
  # Without a package list (a fresh machine) the install fails: update first.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}
install_slurm
[[ -x $RESNEXT_BIN ]] || { echo "slurm-test: $RESNEXT_BIN does not exist: run 'make build' first" >&2; exit 1; }
export CIFAR10_DIR=${CIFAR10_DIR:-$ROOT/data/cifar-10-batches-bin}
[[ -f $CIFAR10_DIR/test_batch.bin ]] || { echo "slurm-test: no CIFAR-10 in $CIFAR10_DIR: run 'make data' or set CIFAR10_DIR" >&2; exit 1; }

# --- the cluster -----------------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/resnext-slurm-test.XXXXXX)
chmod 700 "$tmp"
daemons=() # pids of munged, slurmctld, slurmd

show_logs() {
  local f
  for f in "$tmp"/logs/* "$tmp"/results*/*/train.log "$tmp"/results*/*/seed-*/train.log "$tmp"/slurmctld.log "$tmp"/slurmd.log; do
    [[ -f $f ]] || continue
    echo "----- $f (last 30 lines)"
    tail -n 30 "$f"
  done
}

cleanup() {
  local rc=$? pid
  set +e
  if [[ -n ${SLURM_CONF-} && -f ${SLURM_CONF-} ]] && ((${#daemons[@]} >= 2)); then
    scancel --quiet --full --user="$(id -un)" 2>/dev/null
    sleep 1
  fi
  for pid in "${daemons[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${daemons[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${daemons[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  { wait "${daemons[@]}"; } 2>/dev/null # (without bash's "Killed" notice)
  # Job processes (slurmstepd, trainers) outlive slurmd when a job was still running: end the
  # ones that belong to this test, found by its folder in their command line or environment.
  # (Listed first, then ended: the grep of the listing itself is gone by then.)
  local leftovers
  mapfile -t leftovers < <(grep -lsF "$tmp" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | sort -u)
  for pid in "${leftovers[@]}"; do
    [[ $pid != "$$" ]] && kill -KILL "$pid" 2>/dev/null
  done
  if ((keep)); then say "kept $tmp"; else rm -rf "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on localhost (nothing answers a connection to it).
free_port() {
  local port
  while true; do
    port=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

start_cluster() {
  mkdir -p "$tmp"/{munge,state,spool,logs,results}
  chmod 700 "$tmp/munge"
  # munged on a private socket, with a fresh key: the machine's own munge (if any) is left alone.
  dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$tmp/munge/munge.key"
  munged --foreground --force --socket="$tmp/munge/munge.socket" --key-file="$tmp/munge/munge.key" \
    --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" \
    --seed-file="$tmp/munge/munged.seed" >"$tmp/munge/munged.out" 2>&1 &
  daemons+=($!)

  local cpus ctld_port slurmd_port
  cpus=$(nproc)
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  export SLURM_CONF=$tmp/slurm.conf
  cat >"$SLURM_CONF" <<EOF
ClusterName=resnexttest
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket,cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups (containers often lack them): processes are tracked by parent pid.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Look at pending jobs every 2 s, not every 60: a requeued job starts as soon as it may.
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
# cred_expire (AuthInfo, above) is also how long a requeued job waits before it starts again
# (120 s by default).
MinJobAge=600
KillWait=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  slurmctld -D -i -f "$SLURM_CONF" >"$tmp/slurmctld.out" 2>&1 &
  daemons+=($!)
  slurmd -D -N localhost -f "$SLURM_CONF" >"$tmp/slurmd.out" 2>&1 &
  daemons+=($!)
  local state=""
  for _ in $(seq 100); do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [[ $state == idle ]] && return 0
    sleep 0.2
  done
  fail "the node did not come up (sinfo says '${state:-nothing}'): see slurmctld.log and slurmd.log below"
}

# Waits until none of the jobs $@ is in the queue any more.
wait_for_jobs() {
  local jobs
  jobs=$(IFS=,; echo "$*")
  local deadline=$((SECONDS + TIMEOUT))
  while [[ -n $(squeue -h -j "$jobs" 2>/dev/null) ]]; do
    ((SECONDS < deadline)) || fail "jobs $jobs still queued or running after ${TIMEOUT}s: $(squeue -j "$jobs" 2>&1)"
    sleep 1
  done
}

# "COMPLETED 0:0" for every task of job $1 (slurmctld keeps finished jobs for MinJobAge).
check_job_completed() {
  local job=$1 line
  local lines
  lines=$(scontrol -o show job "$job" 2>&1) || fail "scontrol show job $job: $lines"
  while read -r line; do
    [[ $line == *"JobState=COMPLETED"* && $line == *" ExitCode=0:0"* ]] ||
      fail "job $job did not complete cleanly: $(grep -oE '(JobId|ArrayTaskId|JobState|ExitCode|Reason)=[^ ]*' <<<"$line" | paste -sd' ')"
  done <<<"$lines"
}

# metrics.csv of run $1 has exactly the epochs $2 (e.g. "0 1"), each once.
check_epochs() {
  local run=$1 want=$2 got
  [[ -f $run/metrics.csv ]] || fail "$run/metrics.csv does not exist"
  got=$(tail -n +2 "$run/metrics.csv" | cut -d, -f1 | paste -sd' ')
  [[ $got == "$want" ]] || fail "$run/metrics.csv has epochs '$got', expected '$want'"
}

# --- the tests -------------------------------------------------------------------------------------
start=$SECONDS
start_cluster
say "cluster up ($(sinfo -h -o '%P %D node(s) %c CPUs %t'); SLURM $(sinfo -V | cut -d' ' -f2))"

# 1. The array through submit.sh, as a user would run it, without the GPU (this node has none):
# a command-line option overrides the script's #SBATCH --gres=gpu:1. Each task takes every core:
# two libtorch processes on the same cores slow each other down many times over. Two seeds of
# each experiment: four tasks, one run each.
export STUDY=demo EXPERIMENTS="demo demo_fast" SEEDS=2
export TRAIN_ARGS="--epochs 1 --train-limit 2000 --test-limit 200"
export DEVICE=cpu RESULTS=$tmp/results LOG_DIR=$tmp/logs
out=$("$ROOT/scripts/slurm/submit.sh" --gres=none --cpus-per-task="$(nproc)") || fail "submit.sh failed: $out"
echo "$out"
array=$(sed -n 's/^submitted the training array: job \([0-9]*\).*/\1/p' <<<"$out")
report=$(sed -n 's/^submitted the report: job \([0-9]*\).*/\1/p' <<<"$out")
[[ -n $array && -n $report ]] || fail "submit.sh did not print both job ids"
wait_for_jobs "$array" "$report"
check_job_completed "$array"
check_job_completed "$report"
for run in demo/seed-0:1 demo/seed-1:1001 demo_fast/seed-0:2 demo_fast/seed-1:1002; do
  want=${run##*:} run=${run%:*}
  check_epochs "$RESULTS/$run" 0
  # --repeat k: the config's seed (demo 1, demo_fast 2) + 1000 k.
  seed=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["seed"])' "$RESULTS/$run/config.json") ||
    fail "cannot read $RESULTS/$run/config.json"
  [[ $seed == "$want" ]] || fail "$RESULTS/$run/config.json has seed $seed, not $want"
done
for task in 0 1 2 3; do
  log="$LOG_DIR/resnext-${array}_$task.log"
  grep -q "finished" "$log" || fail "$log does not say the run finished"
done
[[ -f $RESULTS/report.md && -f $RESULTS/report.json ]] || fail "the report job wrote no report in $RESULTS"
compgen -G "$RESULTS/figures/*.png" >/dev/null || fail "the report job drew no PNG in $RESULTS/figures"
figures=("$RESULTS"/figures/*.png)
grep -qE '^\| demo \| 2 \(1, 1001\) \| 2 finished \|' "$RESULTS/report.md" ||
  fail "$RESULTS/report.md does not list demo with its two finished runs: $(grep -E '^\| demo ' "$RESULTS/report.md")"
say "array $array: demo and demo_fast trained one epoch with two seeds each; job $report wrote report.md and ${figures[*]##*/}"

# 2. The time-limit path: SIGUSR1 to the batch shell (what --signal=B:USR1@300 sends) in the
# middle of the first epoch: the task stops the run with a checkpoint, requeues itself, and the
# requeued task resumes and finishes the epoch, recorded exactly once in metrics.csv.
export EXPERIMENTS=demo RESULTS=$tmp/results-requeue SEEDS=
export TRAIN_ARGS="--epochs 1 --train-limit 2500 --test-limit 200"
job=$(sbatch --parsable --chdir="$ROOT" --array=0 --gres=none --cpus-per-task="$(nproc)" \
  --output="$LOG_DIR/%x-%A_%a.log" "$ROOT/scripts/slurm/run-all.sbatch") || fail "sbatch failed: $job"
job=${job%%;*}
train_log=$RESULTS/demo/train.log
deadline=$((SECONDS + 60))
until grep -qE "^epoch 1/1 step " "$train_log" 2>/dev/null; do
  ((SECONDS < deadline)) || fail "no progress line in $train_log after 60 s"
  sleep 0.2
done
scancel --batch --signal=USR1 "${job}_0" || fail "scancel --signal=USR1 failed"
wait_for_jobs "$job"
check_job_completed "$job"
grep -q '^interrupted at epoch 0 step ' "$train_log" || fail "$train_log: the run was not interrupted mid-epoch"
grep -q '^resuming ' "$train_log" || fail "$train_log: the requeued task did not resume"
check_epochs "$RESULTS/demo" 0
restarts=$(scontrol -o show job "$job" | grep -oE 'Restarts=[0-9]+' | head -n 1)
[[ $restarts == Restarts=1 ]] || fail "expected one requeue of job $job, scontrol says ${restarts:-nothing}"
say "job $job: stopped mid-epoch by its time-limit signal, requeued itself, resumed and finished"

say "passed in $((SECONDS - start)) s"
