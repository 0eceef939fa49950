#!/usr/bin/env python3
"""The GPU self-check that scripts/gpu-check.sh launches; USAGE says what it does.

A map for a reader: a `Check` holds the record of the check (a dict, written to --out as
report.json after every phase, with report.md rendered from it and the text logs archived, so
that a check stopped at any moment leaves its three files) and the time budget. PHASES lists the
phases in order of value, each a function of the Check. Numbers come from the files the binary
writes for programs (`info --json`, `bench --json` and the peer's, metrics.csv, config.json, eval's
logits), else from the start line of training.
Python 3.11, standard library only: torch is imported only by EXPORT_CHECK, in python3 on the device.
"""
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
OUT_FILES = ["report.md", "report.json", "logs.tar.gz"]
# What logs.tar.gz takes from the work folder: text only (run folders hold checkpoints and exports).
LOG_SUFFIXES = (".out", ".err", ".peer-err", ".log", ".csv", ".json", ".txt", ".gpu-util")

USAGE = """\
Usage: scripts/gpu-check.sh [--device cuda|cpu] [--quick] [--budget SECONDS] [--out DIR]
                            [--data-dir DIR] [--peer PATH] [--train-limit N] [--work DIR]

The one command to run first on a GPU machine. The phases run in order of value, each given a
share of the time left (a phase that no longer fits is marked "skipped (budget)"), and the
whole check ends inside --budget:
  1. info: `resnext info --json`; with --device cuda the check stops here, saying why, when
     libtorch sees no CUDA device;
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
  --out DIR          gets three files and nothing else (default results/gpu-check):
                     report.json, the record of the check (every check, measurement and phase),
                     report.md, the same for people, both rewritten after every phase, and
                     logs.tar.gz, the text logs of every command
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
Exit status: 0 when every check passed, 1 otherwise, 2 for bad options."""

# Run by python3 on the device: the TorchScript export classifies the first N test images as
# `resnext eval` did (its logits JSON). fp32 on both sides: PyTorch's default TF32 convolutions
# on Ampere+ would differ from ours.
EXPORT_CHECK = """\
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
"""


def die(message):
    print(f"gpu-check: {message}", file=sys.stderr)
    sys.exit(2)


def say(message):
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}")


# --- options, data, sizes --------------------------------------------------------------------------
VALUED = {"--device": "cuda or cpu", "--budget": "a number of seconds", "--peer": "a path", "--data-dir": "a folder",
          "--out": "a folder", "--train-limit": "a number", "--work": "a folder"}


def parse(argv):
    """The options, checked; paths absolute against the caller's folder (the check runs in ROOT)."""
    o = {"device": "cuda", "quick": False, "budget": "540", "peer": ROOT / "bench/torch_peer.py",
         "data_dir": os.environ.get("CIFAR10_DIR") or ROOT / "data/cifar-10-batches-bin",
         "out": "results/gpu-check", "train_limit": None, "work": None}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        elif arg == "--quick":
            o["quick"] = True
        elif arg in VALUED:
            if not args:
                die(f"{arg} needs {VALUED[arg]}")
            o[arg[2:].replace("-", "_")] = args.pop(0)
        else:
            die(f"unknown option '{arg}' (see --help)")
    if o["device"] not in ("cuda", "cpu"):
        die(f"--device must be cuda or cpu, not '{o['device']}'")
    if not re.fullmatch(r"[1-9][0-9]*", o["budget"]):
        die(f"--budget must be a positive number of seconds, not '{o['budget']}'")
    if o["train_limit"] and not re.fullmatch(r"[1-9][0-9]*", o["train_limit"]):
        die(f"--train-limit must be a positive number, not '{o['train_limit']}'")
    o["budget"], o["train_limit"] = int(o["budget"]), o["train_limit"] and int(o["train_limit"])
    for key in ("peer", "data_dir", "out", "work"):
        o[key] = o[key] and Path(os.path.realpath(o[key]))
    o["bin"] = Path(os.path.realpath(os.environ.get("RESNEXT_BIN") or ROOT / "target/release/resnext"))
    return SimpleNamespace(**o)


def find_data(data_dir, train_limit):
    """The test batch and the leading training batches there (.bin, else .bin.xz), how many
    training images that makes, and the note said beside every accuracy."""
    def present(stem):
        return next((n for n in (f"{stem}.bin", f"{stem}.bin.xz") if (data_dir / n).is_file()), None)

    test = present("test_batch")
    if not test:
        die(f"no test_batch.bin (or .bin.xz) in {data_dir}: pass --data-dir or set CIFAR10_DIR")
    train = []
    while len(train) < 5 and (name := present(f"data_batch_{len(train) + 1}")):
        train.append(name)
    if not train:
        die(f"no data_batch_1.bin (or .bin.xz) in {data_dir}: at least one training batch is needed")
    if len(train) == 5:
        note = f"CIFAR-10 from {data_dir} ({test} and the five training batches)"
    else:
        note = f"partial CIFAR-10 from {data_dir}: {len(train)} of 5 training batches ({' '.join(train)}), {test}"
    available = 10000 * len(train)
    return SimpleNamespace(test_file=data_dir / test, note=note, partial=len(train) < 5,
                           train_images=min(train_limit or available, available))


def sizes(device, quick, train_images):
    """What the phases run; --quick makes everything tiny."""
    if not quick:
        return SimpleNamespace(
            bench_exp=["my_resnext"], big_batch=512, peer_size=[],
            steps=["--steps", "3", "--warmup", "1"] if device == "cpu" else ["--steps", "30", "--warmup", "5"],
            check_exp="my_resnext", check_set=[], check_args=[], train_images=train_images, eval_limit=10000,
            run_all_args=["--epochs", "1", "--train-limit", str(train_images)], run_all_only=[])
    # An epoch on a GPU is over in a blink: 10,000 images make it long enough to be interrupted.
    cuda = device == "cuda"
    return SimpleNamespace(
        bench_exp=["my_resnext", "--set", "model.width=2"], big_batch=32, steps=["--steps", "1", "--warmup", "1"],
        peer_size=["--depth", "11", "--cardinality", "2", "--width", "2"], check_exp="demo",
        # --set only when the run starts: --resume refuses a changed one.
        check_set=[] if cuda else ["--set", "model.width=2", "--set", "batch_size=32"],
        check_args=["--test-limit", "1000", "--sync-every", "10"] if cuda else ["--test-limit", "200"],
        train_images=min(train_images, 10000 if cuda else 256), eval_limit=1000 if cuda else 200,
        run_all_args=["--epochs", "1", "--set", "model.width=2", "--train-limit", "256", "--test-limit", "100"],
        run_all_only=["--only", "my_resnext,resnext"])


# --- reading what the commands leave --------------------------------------------------------------
def lines(path):
    try:
        return Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []


def last_line(path):
    return (lines(path) or [""])[-1]


def loads(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def read_json(path):
    return loads("\n".join(lines(path)))


def number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return None


def metrics(run_dir):
    """The rows of a run's metrics.csv, each column a number (None where empty)."""
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            return [{key: number(value) for key, value in row.items()} for row in csv.DictReader(f)]
    except OSError:
        return []


def accuracy_of(logits_json):
    """Percent of the images whose largest logit is at their label, from `eval --logits-json`."""
    data = read_json(logits_json) or {}
    pairs = list(zip(data.get("logits", []), data.get("labels", [])))
    right = sum(row.index(max(row)) == label for row, label in pairs)
    return round(100 * right / len(pairs), 2) if pairs else None


def train_images_of(run_dir):
    """A run's training images, from its start line ("N train / M test images"): the one place the
    binary states them after --train-limit and the validation split."""
    counts = [m[1] for line in lines(run_dir / "train.log") if (m := re.search(r"(\d+) train / ", line))]
    return int(counts[-1]) if counts else 0


def signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # gone already
        pass


def stop_group(proc):
    """SIGINT to the command's process group (our trainers write a checkpoint; run-all passes it on
    to its runs), then SIGKILL to all of its session that is still there 10 s later: run-all's runs
    have process groups of their own, but stay in the session the command leads."""
    signal_group(proc, signal.SIGINT)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            if os.getsid(pid) == proc.pid:
                os.kill(pid, signal.SIGKILL)
        except OSError:  # gone already
            pass
    return proc.wait()


# --- resnext info --json, in words ----------------------------------------------------------------
def yes(flag):
    return "yes" if flag else "no"


def describe_gpu(gpu):
    return (f"{gpu['name']}, {gpu['memory_gib']:.1f} GiB, compute capability {gpu['compute_capability']}, "
            f"native bf16: {'yes' if gpu['native_bf16'] else 'no (emulated: slower than fp32)'}")


def describe_libtorch(lt):
    if not lt["loaded_from"]:
        return f"built against {lt['built_against']}; where it was loaded from is unknown"
    return f"{lt['loaded'] or 'version unknown'} loaded from {lt['loaded_from']} (built against {lt['built_against']})"


def describe_driver(cuda):
    release = f"{cuda['driver'] or 'release unknown'} (supports CUDA {cuda['driver_cuda'] or '?'})"
    return cuda["driver_unavailable"] or release


def describe_info(info):
    """The facts of `resnext info --json` in a few lines, for the terminal and report.md."""
    cuda, cpu = info["cuda"], info["cpu"]
    return [f"resnext {info['resnext']}, libtorch {describe_libtorch(info['libtorch'])}",
            f"libtorch's CUDA runtime: {cuda['runtime'] or 'none'}, cuDNN: {cuda['cudnn'] or 'none'}; CUDA available: "
            f"{yes(cuda['available'])} ({cuda['device_count']} device(s)), cuDNN: {yes(cuda['cudnn_available'])}",
            f"NVIDIA driver: {describe_driver(cuda)}",
            *(f"  cuda:{gpu['index']}: {describe_gpu(gpu)}" for gpu in info["gpus"]),
            f"CPU: {cpu['model'] or 'unknown'}, native bf16: {cpu['native_bf16'] or 'no'}, {cpu['threads']} threads, "
            f"{cpu['cores']} cores; MKL: {yes(cpu['mkl'])}, MKL-DNN: {yes(cpu['mkldnn'])}, "
            f"OpenMP: {yes(cpu['openmp'])}; malloc tuning: {cpu['malloc_tuning'] or 'off'}"]


def why_no_cuda(info):
    cuda, why = info["cuda"], f"NVIDIA driver: {describe_driver(info['cuda'])}"
    if info["gpus"]:  # the driver sees GPUs that libtorch does not
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
        why += (f"; it sees {len(info['gpus'])} GPU(s); CUDA_VISIBLE_DEVICES={visible!r}; libtorch "
                f"{info['libtorch']['built_against']} needs CUDA {cuda['runtime'] or '(none: a CPU build)'}")
    return why


def first_gpu(info):
    """cuda:0, the GPU the check measures, when libtorch's driver lists it."""
    return next((gpu for gpu in info["gpus"] if gpu["index"] == 0), None) if info else None


# --- the check: its record, its budget, its commands ----------------------------------------------
class Stop(Exception):
    """Ends the check: what the later phases need is missing (a failed check says what)."""


class Check:
    def __init__(self, opts, data, work):
        self.opts, self.device, self.data, self.work, self.logs = opts, opts.device, data, work, work / "logs"
        self.logs.mkdir(parents=True)
        self.size = sizes(opts.device, opts.quick, data.train_images)
        self.started = time.monotonic()
        self.deadline = self.started + opts.budget
        self.reserve = opts.budget // 30 + 3  # kept back for the last report and the log archive
        self.phase = None  # the phase running
        self.running = None  # the command started last: a Ctrl-C of ours stops it
        self.trained = None  # train-resume's run: None when that phase did not run, else whether it finished
        # run-all and the GPU sampling are measured on one GPU: the first CUDA_VISIBLE_DEVICES leaves.
        self.one_gpu = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
        self.peer_flags = ["--device", self.device, "--threads", str(len(os.sched_getaffinity(0))), "--tf32", "off",
                           *self.size.peer_size, *(["--channels-last"] if self.device == "cpu" else [])]  # its fastest
        self.record = {
            "passed": False, "finished": False, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "host": socket.gethostname(), "commit": commit(), "device": self.device, "quick": opts.quick,
            "budget_seconds": opts.budget, "seconds": 0, "data": data.note, "partial_data": data.partial,
            "train_images": self.size.train_images, "gpu": None, "info": None,
            "phases": {}, "checks": [], "skipped": [], "bench": [], "ours_vs_peer": [],
            "interrupt_resume": {"command": None, "config": None, "epochs": [], "accuracy_measured_on":
                                 f"{data.note}; runs trained on the first {self.size.train_images} training images"},
            "export": None, "run_all": {}, "warnings": [], "peer_warnings": [],
        }

    # The budget.
    def cost(self, phase):
        return phase.quick if self.opts.quick else phase.full

    def begin(self, phase):
        """Starts `phase` when its share of the time left is at least the least it needs (else
        records it skipped and returns False). Its measurements start while its share lasts; a
        command may run on past the share, but never into the least time of the phases after it."""
        here = PHASES[PHASES.index(phase):]
        weight, least = self.cost(phase)
        now = time.monotonic()
        left = max(0, int(self.deadline - self.reserve - now))
        share = left * weight // sum(self.cost(p)[0] for p in here)
        room = left - sum(self.cost(p)[1] for p in here[1:])
        # The later phases' least time is kept back only when this phase still fits beside it: an
        # earlier phase is worth more.
        if room < least:
            room = left
        share = min(max(share, least), room)
        if share < least:
            why = f"skipped (budget): {share}s of {left}s left, it needs at least {least}s"
            self.record["phases"][phase.name] = {"seconds": 0, "status": why}
            say(f"{phase.name}: {why}")
            return False
        self.phase, self.phase_start, self.share_end, self.hard_end = phase, now, now + share, now + room
        say(f"{phase.name} ({share}s, at most {room}s)")
        return True

    def end_phase(self, status="ran"):
        if self.phase:
            self.record["phases"][self.phase.name] = {"seconds": round(time.monotonic() - self.phase_start),
                                                      "status": status}
        self.phase = None

    def starts(self, name):
        """Whether a measurement may still start in this phase; if not, it is recorded skipped."""
        if time.monotonic() < self.share_end:
            return True
        why = f"skipped (budget): phase {self.phase.name} had used its share"
        self.record["skipped"].append({"name": name, "detail": why})
        print(f"  skip  {name}: skipped (budget)")
        return False

    def left(self):
        """The seconds a command of this phase may run (at least 1)."""
        return max(1, self.hard_end - time.monotonic())

    # Checks and commands.
    def check(self, name, ok, detail):
        """One line on the screen, one entry in the record; one that fails fails the check."""
        self.record["checks"].append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"  {'ok  ' if ok else 'FAIL'}  {name}: {detail}")

    def err(self, name, ours=True):
        """Where a command's stderr goes: ours is scanned for warnings at the end; the peer's and
        torch's Python (*.peer-err) is not ours to fix, and only reported."""
        return self.logs / f"{name}.{'err' if ours else 'peer-err'}"

    def start(self, name, cmd, ours=True, env=None):
        """Starts a command in a session of its own, which it leads (a stop reaches all it
        started), stdout to logs/NAME.out."""
        with open(self.logs / f"{name}.out", "w") as out, open(self.err(name, ours), "w") as err:
            self.running = subprocess.Popen([str(arg) for arg in cmd], stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                            start_new_session=True)
        return self.running

    def wait(self, proc, seconds):
        """Its exit status; 124 (as timeout's) when it ran `seconds` and was stopped."""
        try:
            return proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            return 124

    def run(self, name, cmd, ours=True, env=None):
        """One command, stopped when it would eat into the least time of the phases after this one."""
        return self.wait(self.start(name, cmd, ours, env), self.left())

    def failure(self, rc, name, ours=True):
        err = self.err(name, ours)
        budget = " (stopped by the budget)" if rc == 124 else ""
        return f"exit status {rc}{budget}: {last_line(err)} (log logs/{err.name})"

    def check_lines(self, name, path, epochs):
        """At most a few lines of output per epoch: more means something prints per step."""
        count, allowed = len(lines(path)), 6 + 5 * epochs
        said = f"{count} lines of output for {epochs} epoch(s)"
        self.check(name, count <= allowed, f"{said} (at most {allowed})" if count <= allowed
                   else f"{said}, more than {allowed}: something prints per step ({path.relative_to(self.work)})")

    @contextmanager
    def gpu_busy(self, name):
        """Mean GPU utilisation (%) while the body runs, from nvidia-smi every 100 ms, in .percent
        after it (None without CUDA or nvidia-smi): a low figure means a host-bound step."""
        busy = SimpleNamespace(percent=None)
        if self.device != "cuda" or not shutil.which("nvidia-smi"):
            yield busy
            return
        samples = self.logs / f"{name}.gpu-util"
        with open(samples, "w") as f:
            sampler = subprocess.Popen(["nvidia-smi", f"--id={self.one_gpu}", "--query-gpu=utilization.gpu",
                                        "--format=csv,noheader,nounits", "-lms", "100"],
                                       stdout=f, stderr=subprocess.DEVNULL)
        try:
            yield busy
        finally:
            sampler.terminate()
            sampler.wait()
            values = [int(v) for v in lines(samples) if v.strip().isdigit()]
            busy.percent = round(sum(values) / len(values)) if values else None

    # The record, as the three files.
    def write(self, finished=False):
        """report.json, report.md and logs.tar.gz as of now, each replaced whole: a check killed at
        any moment leaves the last ones."""
        r = self.record
        r["finished"] = r["finished"] or finished
        r["seconds"] = round(time.monotonic() - self.started)
        r["passed"] = r["finished"] and all(check["ok"] for check in r["checks"])
        r["ours_vs_peer"] = ours_vs_peer(r["bench"])
        replace(self.opts.out / "report.json", lambda tmp: tmp.write_text(json.dumps(r, indent=2) + "\n"))
        replace(self.opts.out / "report.md", lambda tmp: tmp.write_text(markdown(r)))
        replace(self.opts.out / "logs.tar.gz", self.archive)

    def archive(self, path):
        with tarfile.open(path, "w:gz") as tar:
            for file in sorted(p for top in ("logs", "runs") for p in (self.work / top).rglob("*")):
                if file.is_file() and file.name.endswith(LOG_SUFFIXES):
                    tar.add(file, arcname=str(file.relative_to(self.work)))


def replace(path, write):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def commit():
    """The bundle's COMMIT, else the checkout's."""
    if (ROOT / "COMMIT").is_file():
        return (ROOT / "COMMIT").read_text().strip()
    try:
        git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return git.stdout.strip() if git.returncode == 0 else "unknown"


def ours_vs_peer(bench):
    """Ours against the peer, for the same arguments in the same phase."""
    peers = {(b["phase"], b["args"]): b for b in bench if b["who"] == "peer"}
    return [{"phase": ours["phase"], "args": ours["args"], "ours": ours["images_per_second"],
             "peer": peer["images_per_second"], "ratio": ours["images_per_second"] / peer["images_per_second"],
             "ours_gpu_busy_percent": ours["gpu_busy_percent"], "peer_gpu_busy_percent": peer["gpu_busy_percent"]}
            for ours in bench if ours["who"] == "ours" and (peer := peers.get((ours["phase"], ours["args"])))]


# --- the phases ------------------------------------------------------------------------------------
def info(c):
    """libtorch and the device, from the first `resnext` call: also whether the binary runs here."""
    if rc := c.run("info", [c.opts.bin, "info", "--json"]):
        # The bundle's launcher refuses a libtorch it was not built against, in one line.
        why = last_line(c.err("info"))
        c.check("info", False, f"resnext info exited with status {rc}: {why}")
        raise Stop(f"resnext does not run here: {why}")
    found = c.record["info"] = read_json(c.logs / "info.out")
    if not found:
        c.check("info", False, "resnext info --json printed no JSON (log logs/info.out)")
        raise Stop("resnext info --json printed no JSON")
    print("\n".join(describe_info(found)))
    c.check("info", True, describe_libtorch(found["libtorch"]))
    gpu = first_gpu(found)
    c.record["gpu"] = gpu and gpu["name"]
    if c.device == "cuda" and not found["cuda"]["available"]:
        c.check("cuda-available", False, f"libtorch sees no CUDA device ({why_no_cuda(found)}); the other phases "
                                         "need one (--device cpu checks the CPU)")
        raise Stop("CUDA is not available")
    if c.device == "cuda":
        c.check("cuda-available", True, describe_gpu(gpu) if gpu else f"{found['cuda']['device_count']} device(s)")


def bench(c, who, label, args):
    """One measurement, ours (`resnext bench`) or the peer's, with these arguments."""
    name, ours, size = f"bench-{who}-{label}", who == "ours", c.size
    if not c.starts(name):
        return
    if ours:
        cmd = [c.opts.bin, "bench", *size.bench_exp, "--device", c.device, *args, "--json"]
        model = " ".join(size.bench_exp)
    else:
        cmd = ["python3", c.opts.peer, *c.peer_flags, *args, "--json"]
        model = "ResNeXt-29 8x16d" + (f" ({' '.join(size.peer_size)})" if size.peer_size else "")
    with c.gpu_busy(name) as busy:
        rc = c.run(name, cmd, ours)
    # Both print one JSON object with the same fields; anything printed per step would spoil it.
    result = read_json(c.logs / f"{name}.out")
    if rc or not result:
        c.check(name, False, c.failure(rc, name, ours) if rc else f"printed no JSON (log logs/{name}.out)")
        return
    entry = {"who": who, "phase": c.phase.name, "args": " ".join(args),
             "images_per_second": result["images_per_second"], "ms_per_step": result["ms_per_step"], "aten_ops": result["aten_ops_per_step"],
             "peak_rss_mib": result["peak_rss_mib"], "gpu_busy_percent": busy.percent, "model": model,
             "first_step_seconds": result["first_step_seconds"]}
    c.record["bench"].append(entry)
    said = f"{entry['images_per_second']:.1f} images/s, GPU busy {'-' if busy.percent is None else f'{busy.percent}%'}"
    if ours:
        said += f", {entry['aten_ops']} ATen ops per step"
    elif entry["first_step_seconds"]:
        said += f", first step {entry['first_step_seconds']:.1f}s (compiles)"
    c.check(name, True, said)


def step_args(c, mode, precision, batch, *more):
    return ["--mode", mode, "--precision", precision, "--batch", str(batch), *more, *c.size.steps]


def bench_64(c):
    for precision in ("bf16", "fp32"):
        for who in ("ours", "peer"):  # alternating: a machine that drifts favours neither
            bench(c, who, f"train-{precision}-64", step_args(c, "train", precision, 64))


def bench_512(c):
    for mode in ("train", "eval"):
        for precision in ("bf16", "fp32"):
            for who in ("ours", "peer"):
                bench(c, who, f"{mode}-{precision}-{c.size.big_batch}", step_args(c, mode, precision, c.size.big_batch))


def memory_format(c):
    other = "channels-last" if c.device == "cuda" else "contiguous"  # the other one than the default
    for precision in ("bf16", "fp32"):
        args = step_args(c, "train", precision, 64, "--memory-format", other)
        bench(c, "ours", f"train-{precision}-64-{other}", args)


def peer_compiled(c):
    mode = "train" if c.device == "cuda" else "eval"  # a CPU compiles a training step for minutes
    for compiled in ["default"] + (["reduce-overhead"] if c.device == "cuda" else []):
        bench(c, "peer", f"{mode}-bf16-64-compile-{compiled}", step_args(c, mode, "bf16", 64, "--compile", compiled))


def train_resume(c):
    """A bf16 run of 2 epochs, stopped by SIGINT in the first, then resumed: each epoch once."""
    size, run_dir = c.size, c.work / "runs/train-bf16"
    train = [c.opts.bin, "train", size.check_exp, "--device", c.device, "--precision", "bf16", "--epochs", "2",
             "--out", run_dir, *size.check_args, "--train-limit", size.train_images]
    c.record["interrupt_resume"]["command"] = " ".join(map(str, train + size.check_set))
    out = c.logs / "train-interrupted.out"
    proc = c.start("train-interrupted", train + size.check_set)
    # The trainer catches SIGINT from before its first step on; earlier, the signal would end it
    # without a checkpoint. So it goes after the first progress line.
    stop_by = time.monotonic() + c.left() / 2
    while proc.poll() is None and time.monotonic() < stop_by and not any(
            line.startswith("epoch 1/2 step ") for line in lines(out)):
        time.sleep(0.1)
    signal_group(proc, signal.SIGINT)
    rc = c.wait(proc, c.left())
    stopped = [line for line in lines(out) if line.startswith("interrupted at epoch 0 step ")]
    if rc == 130 and stopped and (run_dir / "last.safetensors").is_file():
        c.check("train-sigint", True, f"exit status 130: {stopped[-1].split(':')[0]}, checkpoint written")
    else:
        c.check("train-sigint", False, f"exit status {rc} (expected 130 with a mid-epoch checkpoint): "
                                       + " ".join(lines(out)[-2:] + lines(c.err("train-interrupted"))[-2:]))
    c.check_lines("train-sigint-output", out, 1)

    rc = c.run("train-resumed", train + ["--resume"])
    resumed = any(line.startswith("resuming ") for line in lines(c.logs / "train-resumed.out"))
    rows = metrics(run_dir)
    epochs = [row["epoch"] for row in rows]
    c.trained = rc == 0 and resumed and epochs == [0, 1]
    c.check("train-resume", c.trained, f"resumed and finished; metrics.csv has epochs {epochs}, each once"
            if c.trained else f"exit status {rc}, metrics.csv epochs {epochs} (expected [0, 1]): "
                              f"{last_line(c.err('train-resumed'))}")
    c.check_lines("train-resume-output", c.logs / "train-resumed.out", 2)
    config = read_json(run_dir / "config.json") or {}
    c.record["interrupt_resume"]["config"] = {key: config.get(key) for key in ("name", "precision", "batch_size",
                                                                                "epochs")}
    c.record["interrupt_resume"]["epochs"] = [
        {key: row.get(key) for key in ("epoch", "images_per_second", "val_accuracy", "epoch_seconds")} for row in rows]


def eval_export(c):
    """`resnext eval` and `export` of train-resume's run, and the export in torch on the device."""
    if c.trained is None:  # the budget skipped train-resume: nothing to evaluate, and nothing failed
        c.record["skipped"].append({"name": "eval-export", "detail": "skipped: phase train-resume did not run"})
        print("  skip  eval-export: phase train-resume did not run")
        return
    if not c.trained:
        c.check("eval", False, "not run: the training run of phase train-resume did not finish")
        return
    run_dir, n, accuracy = c.work / "runs/train-bf16", c.size.eval_limit, {}
    for precision, name in (("fp32", "eval"), ("bf16", "eval-bf16")):
        logits = c.work / f"logits-{precision}.json"
        rc = c.run(name, [c.opts.bin, "eval", run_dir, "--device", c.device, "--precision", precision, "--limit", n,
                          "--logits-json", logits])
        accuracy[precision] = accuracy_of(logits) if rc == 0 else None
        c.check(name, accuracy[precision] is not None,
                f"exit status {rc}, test accuracy {fmt(accuracy[precision], 2, '%')} on {n} images ({precision})")
    model = run_dir / "model.pt"
    rc = c.run("export", [c.opts.bin, "export", run_dir, "--out", model])
    exported = all(p.is_file() and p.stat().st_size for p in (model, run_dir / "model.pt.json"))
    c.check("export", rc == 0 and exported, f"exit status {rc}; model.pt and model.pt.json written: {yes(exported)}")
    rc = c.run("export-python", ["python3", "-c", EXPORT_CHECK, model, c.work / "logits-fp32.json", c.data.test_file,
                                 n, c.device], ours=False)
    py = loads(last_line(c.logs / "export-python.out"))
    if rc or not isinstance(py, dict):
        c.check("export-python", False, f"python3 failed (status {rc}): {last_line(c.err('export-python', False))}")
        return
    py_acc, eval_acc, diff = round(100 * py["accuracy"], 2), accuracy["fp32"], py["max_logit_diff"]
    c.record["export"] = {"eval_accuracy_percent": eval_acc, "export_accuracy_percent": py_acc,
                          "max_logit_difference": diff, "ran_on": py["ran_on"], "torch": py["torch"],
                          "eval_bf16_accuracy_percent": accuracy["bf16"], "test_images": n,
                          "accuracy_measured_on": c.data.note}
    tolerance = 1e-2 if c.device == "cuda" else 1e-4
    same = (eval_acc is not None and abs(eval_acc - py_acc) <= 0.1 and diff <= tolerance
            and py["ran_on"].startswith(c.device) and py["labels_match"])
    c.check("export-python", same, f"the export in torch on {py['ran_on']}: accuracy {py_acc:.2f}% vs resnext eval "
                                   f"{fmt(eval_acc, 2, '%')}, max |logit difference| {diff:.2e} (at most {tolerance})")


def run_all(c):
    """Several blog runs at once on one GPU (on a CPU: 2), against my_resnext alone."""
    per_gpu = 5 if c.device == "cuda" else 2
    run_all_once(c, f"run-all-{per_gpu}", ["--per-gpu", per_gpu, *c.size.run_all_only])
    run_all_once(c, "run-all-1", ["--per-gpu", 1, "--only", "my_resnext"])


def run_all_once(c, name, args):
    results, begin = c.work / "runs" / name, time.monotonic()
    rc = c.run(name, [ROOT / "scripts/run-all.sh", "--device", c.device, "--results", results, *args,
                      "--", *c.size.run_all_args], env={"CUDA_VISIBLE_DEVICES": c.one_gpu})
    wall = time.monotonic() - begin
    runs, complete = [], True
    # The run folders run-all started (each has its train.log), not the report's figures/.
    for exp in sorted(log.parent.name for log in results.glob("*/train.log")):
        epoch0 = next((row for row in metrics(results / exp) if row["epoch"] == 0), {})
        if epoch0.get("images_per_second") is None:
            complete = False
            continue
        runs.append({"experiment": exp, "images_per_second": epoch0["images_per_second"],
                     "epoch_seconds": epoch0.get("epoch_seconds"), "train_images": train_images_of(results / exp)})
        c.check_lines(f"{name}-{exp}-output", results / exp / "train.log", 1)
    total, images = sum(r["images_per_second"] for r in runs), sum(r["train_images"] for r in runs)
    c.record["run_all"][name] = {"runs": runs, "sum_images_per_second": total, "wall_seconds": round(wall, 1),
                                 "train_images": images, "images_per_wall_second": images / wall if wall else None}
    budget = " (stopped by the budget)" if rc == 124 else ""
    c.check(name, rc == 0 and complete,
            f"exit status {rc}{budget} in {wall:.0f}s; sum of the runs' images/s: {total:.1f}")


def scan_warnings(c):
    """A line with "warn" in our commands' stderr or the trainers' logs (which hold theirs) fails the
    check; the peer's and torch's (*.peer-err) are reported only."""
    def hits(paths):
        return [(f"{path.relative_to(c.work)}: ", line)
                for path in sorted(paths) for line in lines(path) if "warn" in line.lower()]

    ours = ["".join(hit) for hit in hits([*c.logs.glob("*.err"), *c.work.glob("runs/run-all-*/*/train.log")])][:5]
    c.record["warnings"] = ours
    c.record["peer_warnings"] = sorted({line for _, line in hits(c.logs.glob("*.peer-err"))})[:3]
    c.check("no-warnings", not ours, f"{ours[0]} ({len(ours)} line(s) shown in the report)" if ours
            else 'no line with "warn" in the stderr of our commands')


@dataclass
class Phase:
    name: str
    full: tuple  # (weight: its share of the time left against the phases after it, least seconds it needs)
    quick: tuple  # the same with --quick, where the start-up of each command (libtorch, torch) is most of it
    run: Callable


# In order of value: a short budget runs the first ones.
PHASES = [
    Phase("info", (1, 5), (1, 3), info),
    Phase("bench-64", (3, 40), (4, 15), bench_64),
    Phase("bench-512", (4, 30), (5, 15), bench_512),
    Phase("memory-format", (1, 20), (2, 6), memory_format),
    Phase("peer-compiled", (4, 45), (3, 20), peer_compiled),
    Phase("train-resume", (3, 40), (1, 8), train_resume),
    Phase("eval-export", (1, 20), (1, 6), eval_export),
    Phase("run-all", (3, 60), (2, 12), run_all),
]


# --- report.md, from the record --------------------------------------------------------------------
def fmt(value, digits=1, suffix=""):
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def table(head, rows):
    def row(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return [row(head), "|" + "---|" * len(head), *map(row, rows)]


def markdown(r):
    status = "passed" if r["passed"] else ("FAILED" if r["finished"] else "in progress (or stopped)")
    info_, gpu = r["info"], first_gpu(r["info"])
    where = (gpu and r["device"] == "cuda" and describe_gpu(gpu)) or (info_ and info_["cpu"]["model"]) or "?"
    quick = " (--quick: tiny sizes, the speeds mean nothing)" if r["quick"] else ""
    md = [f"# gpu-check: {status}", "",
          f"- date: {r['date']}, host {r['host']}, commit {r['commit']}, {r['seconds']} s of a "
          f"{r['budget_seconds']} s budget",
          f"- device: {r['device']}{quick}: {where}"]
    if info_:
        md.append(f"- NVIDIA driver: {describe_driver(info_['cuda'])}; libtorch {describe_libtorch(info_['libtorch'])}")
    md += [f"- data: {r['data']}", "", "## Phases", ""]
    md += table(["phase", "seconds", ""], ([p.name, fmt(r["phases"].get(p.name, {}).get("seconds"), 0),
                                           r["phases"].get(p.name, {}).get("status", "not reached")] for p in PHASES))
    md += ["", "## Checks", ""]
    md += table(["check", "", "detail"], [*([c["name"], "ok" if c["ok"] else "**FAIL**", c["detail"]]
                                            for c in r["checks"]),
                                          *([s["name"], "skipped", s["detail"]] for s in r["skipped"])])
    if r["bench"]:
        md += ["", "## Speed", "",
               "Median images/s of each measurement: ours `resnext bench`, the peer `bench/torch_peer.py` (eager "
               "PyTorch unless it says compile), TF32 off on both, alternating. GPU busy: mean utilisation from "
               "nvidia-smi while the command ran (a low figure means a host-bound step).", ""]
        if r["ours_vs_peer"]:
            md += table(["phase", "measurement", "ours", "peer", "ours / peer", "GPU busy ours / peer"],
                        ([p["phase"], f"`{p['args']}`", fmt(p["ours"]), fmt(p["peer"]), fmt(p["ratio"], 2, "x"),
                          f"{fmt(p['ours_gpu_busy_percent'], 0, '%')} / {fmt(p['peer_gpu_busy_percent'], 0, '%')}"]
                         for p in r["ours_vs_peer"]))
            md.append("")
        md += ["Every measurement:", ""]
        md += table(["who", "phase", "measurement", "images/s", "ms/step", "ATen ops", "GPU busy",
                     "first step (compile)", "model"],
                    ([b["who"], b["phase"], f"`{b['args']}`", fmt(b["images_per_second"]), fmt(b["ms_per_step"]),
                      "-" if b["aten_ops"] is None else b["aten_ops"], fmt(b["gpu_busy_percent"], 0, "%"),
                      fmt(b["first_step_seconds"], 1, " s"), b["model"]] for b in r["bench"]))
    ir = r["interrupt_resume"]
    if ir["epochs"]:
        config = ir["config"]
        md += ["", "## Interrupt and resume", "", f"`{ir['command']}`: SIGINT in epoch 1, then `--resume`.",
               f"Its config.json: {config['name']}, {config['precision']}, batch {config['batch_size']}, "
               f"{config['epochs']} epochs. Accuracy on: {ir['accuracy_measured_on']}.", ""]
        md += table(["epoch", "images/s", "val_accuracy", "seconds"],
                    ([fmt(e["epoch"], 0), fmt(e["images_per_second"]), fmt(e["val_accuracy"], 4),
                      fmt(e["epoch_seconds"])] for e in ir["epochs"]))
    if e := r["export"]:
        md += ["", "## Export", "",
               f"On the first {e['test_images']} test images ({e['accuracy_measured_on']}): `resnext eval` (fp32) "
               f"{fmt(e['eval_accuracy_percent'], 2, '%')}, the TorchScript export in torch {e['torch']} on "
               f"{e['ran_on']} {fmt(e['export_accuracy_percent'], 2, '%')} (max logit difference "
               f"{e['max_logit_difference']:.2e}); "
               f"`resnext eval --precision bf16` {fmt(e['eval_bf16_accuracy_percent'], 2, '%')}."]
    if r["run_all"]:
        md += ["", "## run-all", "", "One epoch of blog experiments several at once on one device (`--per-gpu`), "
               f"against my_resnext alone; {r['data']}.", ""]
        md += table(["", "runs", "sum of the runs' images/s", "train images / wall second", "wall seconds"],
                    ([name, len(a["runs"]), fmt(a["sum_images_per_second"]), fmt(a["images_per_wall_second"]),
                      fmt(a["wall_seconds"], 0)] for name, a in r["run_all"].items()))
    if r["warnings"]:
        md += ["", "## Warnings in our commands' stderr", "", "```", *r["warnings"], "```"]
    if r["peer_warnings"]:
        md += ["", "Printed by the peer or torch in Python (not counted): "
               + "; ".join(f"`{warning}`" for warning in r["peer_warnings"])]
    if info_:
        md += ["", "## resnext info", "", "```", *describe_info(info_), "```"]
    return "\n".join(md) + "\n"


# --- main --------------------------------------------------------------------------------------------
def prepare_out(out):
    """--out, cleared of an earlier check's files (a check killed while writing leaves a .tmp); a
    folder with other files is refused."""
    ours = OUT_FILES + [f"{name}.tmp" for name in OUT_FILES]
    if out.exists() and not out.is_dir():
        die(f"--out {out} is a file")
    for keep in OUT_FILES:
        if (out / keep).is_dir():
            die(f"--out {out}: {keep} is a folder")
    if extra := (sorted(set(os.listdir(out)) - set(ours)) if out.is_dir() else []):
        die(f"--out {out} holds other files ({' '.join(extra[:3])}): choose an empty folder or an earlier check's")
    out.mkdir(parents=True, exist_ok=True)
    for name in ours:
        (out / name).unlink(missing_ok=True)


def main(argv):
    sys.stdout.reconfigure(line_buffering=True)  # each line as it comes, also into a pipe or a log
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `--help | head` ends quietly
    for sig in (signal.SIGTERM, signal.SIGHUP):  # a slot's end, a lost terminal: as a Ctrl-C
        signal.signal(sig, signal.default_int_handler)
    opts = parse(argv)
    if not os.access(opts.bin, os.X_OK) or opts.bin.is_dir():
        die(f"the resnext binary {opts.bin} does not exist: run 'make build' (or set RESNEXT_BIN)")
    if not opts.peer.is_file():
        die(f"the PyTorch peer {opts.peer} was not found: pass --peer PATH")
    if not shutil.which("python3"):
        die("python3 not found: it runs the peer and the export check (it needs torch)")
    data = find_data(opts.data_dir, opts.train_limit)
    prepare_out(opts.out)
    os.environ.update(CIFAR10_DIR=str(opts.data_dir), RESNEXT_BIN=str(opts.bin))  # for our commands and run-all.sh
    os.chdir(ROOT)
    if opts.work:
        shutil.rmtree(opts.work, ignore_errors=True)
        opts.work.mkdir(parents=True)
    work = opts.work or Path(tempfile.mkdtemp(prefix="gpu-check."))
    try:
        return run_phases(Check(opts, data, work))
    finally:
        if not opts.work:
            shutil.rmtree(work, ignore_errors=True)


def run_phases(c):
    """The phases that fit, then the scan for warnings; the exit status."""
    report = c.opts.out / "report.md"
    try:
        for phase in PHASES:
            if c.begin(phase):
                phase.run(c)
                c.end_phase()
                c.write()
            elif phase is PHASES[0]:
                c.check("budget", False, f"a budget of {c.opts.budget}s leaves no time for anything")
                raise Stop(f"a budget of {c.opts.budget}s leaves no time for anything")
        scan_warnings(c)
    except Stop as why:
        c.end_phase()
        c.write(finished=True)
        print(f"gpu-check: FAILED: {why}; report {report}")
        return 1
    except KeyboardInterrupt:
        if c.running and c.running.poll() is None:  # in a process group of its own: our Ctrl-C missed it
            stop_group(c.running)
        c.end_phase("interrupted")
        c.write()
        print(f"gpu-check: interrupted; report {report}")
        return 130
    c.write(finished=True)
    failed = [check["name"] for check in c.record["checks"] if not check["ok"]]
    if failed:
        print(f"gpu-check: FAILED {len(failed)} check(s): {' '.join(failed)}; report {report}")
        return 1
    print(f"gpu-check: passed {len(c.record['checks'])} checks in {c.record['seconds']}s; report {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
