#!/usr/bin/env python3
"""The CPU benchmark that scripts/bench-cpu.sh launches; USAGE says what it does.

Both programs print their measurement as JSON (`resnext bench --json`, `bench/torch_peer.py
--json`, the same fields), so this reads numbers, not text. Python 3, standard library only: the
peer runs in PYTHON (the project's venv, which has torch).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

USAGE = """\
Usage: scripts/bench-cpu.sh [--rounds N] [--precision fp32|bf16|both] [--profile N] [--peer PATH]

Benchmarks my_resnext (batch 64) on this CPU: training steps (augmentation, forward, backward,
update) and evaluation batches, `resnext bench` (with the fused BatchNorm-ReLU, its default on a
CPU, and without it) and the peer (bench/torch_peer.py, channels-last, the same malloc tunables
the binary sets for itself; in bf16 also its torch.compile'd step) one after the other, N rounds.
Prints each measurement (images/s, median step, peak memory and, for ours, the ATen ops per
step), then per measurement the ratio of ours to the peer's (and to ours without fusing) round by
round, with their median: these shared machines drift by 10-15% within minutes, and a ratio
within one round holds when they do. On a CPU without AMX or AVX512-BF16, bf16 rounds time one
step: a bf16 training step there takes about a minute.

  --rounds N      alternating rounds per measurement (default 2)
  --precision P   fp32, bf16 or both (default both)
  --profile N     also record N training steps by operator, ours and the peer's eager, once per
                  precision (PROFILE lines: self time by operator class; a CEILING line: the most
                  ours could gain while both run the same convolutions)
  --peer PATH     the peer script (default bench/torch_peer.py)

Environment: RESNEXT_BIN (default target/release/resnext), PYTHON for the peer (default
.venv/bin/python).
"""

BATCH = 64


class BadOption(Exception):
    """One line, and exit status 2."""


class Failed(Exception):
    """A benchmark that failed: one line, and exit status 1."""


@dataclass
class Measured:
    round: str  # "1", "2", ... or "profile"
    label: str  # ours, ours-unfused, peer, peer-compiled
    mode: str
    precision: str
    result: dict  # the program's JSON

    @property
    def kind(self):
        return f"{self.mode} {self.precision}"


def parse(argv):
    opts = {"rounds": 2, "precision": "both", "profile": 0, "peer": ROOT / "bench/torch_peer.py"}
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag in ("-h", "--help"):
            print(USAGE, end="")
            sys.exit(0)
        if flag not in ("--rounds", "--precision", "--profile", "--peer"):
            raise BadOption(f"unknown option {flag} (see --help)")
        if not args:
            raise BadOption(f"{flag} needs a value (see --help)")
        opts[flag[2:]] = args.pop(0)
    for name in ("rounds", "profile"):
        if not str(opts[name]).isdigit():
            raise BadOption(f"--{name} must be a whole number, not '{opts[name]}'")
        opts[name] = int(opts[name])
    if opts["precision"] not in ("fp32", "bf16", "both"):
        raise BadOption(f"--precision must be fp32, bf16 or both, not '{opts['precision']}'")
    opts["peer"] = Path(opts["peer"]).resolve()
    if not opts["peer"].is_file():
        raise BadOption(f"no peer script at {opts['peer']} (pass --peer PATH)")
    return opts


def json_of(cmd, env=None):
    """Runs a command that prints JSON (a benchmark, `resnext info --json`) and returns it; its
    stderr shows, but not torch.profiler's complaint that a CPU-only machine has no GPU."""
    try:
        done = subprocess.run([str(part) for part in cmd], capture_output=True, text=True, env=env)
    except OSError as error:
        raise Failed(f"cannot run {cmd[0]}: {error}")
    for line in done.stderr.splitlines():
        if "gpuGetDeviceCount" not in line:
            print(line, file=sys.stderr)
    if done.returncode:
        raise Failed(f"{' '.join(map(str, cmd))} exited with status {done.returncode}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise Failed(f"{' '.join(map(str, cmd))} printed no JSON ({error}): {done.stdout[:200]!r}")


def describe(m):
    r = m.result
    line = (f"{m.label} {m.kind}: {r['images_per_second']:.1f} images/s, median {r['ms_per_step']:.1f} ms/step "
            f"(best {r['best_images_per_second']:.1f} images/s) over {r['steps']} steps after {r['warmup']} warm-up, "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB")
    if r.get("aten_ops_per_step") is not None:
        line += f", {r['aten_ops_per_step']} ATen ops per step"
    if r.get("first_step_seconds"):
        line += f", first step {r['first_step_seconds']:.1f} s (compiles)"
    if p := r.get("profile"):
        head = f"\nPROFILE {m.label} {m.kind}:"
        line += f"{head} {p['ms_per_step']:.1f} ms/step of operator self time over {p['steps']} steps"
        for row in p["classes"]:
            line += f"{head} class {row['name']:<22} {row['percent']:5.1f}% {row['ms_per_step']:8.1f} ms/step"
    return line


def ratios(measured):
    """Ours over each other measurement of the same mode and precision, within each timed round."""
    timed = [m for m in measured if m.round != "profile"]
    speed = {(m.round, m.label, m.kind): m.result["images_per_second"] for m in timed}
    rounds = sorted({m.round for m in timed}, key=int)
    lines = []
    for kind in {m.kind for m in timed}:
        for other in {m.label for m in timed} - {"ours"}:
            by_round = [speed[r, "ours", kind] / speed[r, other, kind] for r in rounds
                        if (r, "ours", kind) in speed and (r, other, kind) in speed]
            if by_round:
                lines.append(f"RATIO ours / {other}, {kind}: median {statistics.median(by_round):.2f}x "
                             f"(by round: {' '.join(f'{x:.2f}' for x in by_round)})")
    return sorted(lines)


def ceilings(measured):
    """What the convolutions leave to win: they are the same oneDNN kernels in both programs, so a
    step that spent no time outside them would be at most the peer's timed step (median of its
    rounds) over our profiled convolutions."""
    convolutions = {m.precision: row["ms_per_step"] for m in measured
                    if m.label == "ours" and m.result.get("profile")
                    for row in m.result["profile"]["classes"] if row["name"] == "convolution"}
    lines = []
    for label in ("peer", "peer-compiled"):
        for precision, conv in convolutions.items():
            speeds = [m.result["images_per_second"] for m in measured if m.round != "profile"
                      and m.label == label and m.mode == "train" and m.precision == precision]
            if speeds:
                step = 1000 * BATCH / statistics.median(speeds)
                lines.append(f"CEILING ours / {label}, train {precision}: our convolutions take {conv:.0f} ms/step, "
                             f"the peer {step:.0f} ms/step in all; with no time outside them ours would be at most "
                             f"{step / conv:.2f}x")
    return sorted(lines)


def main(argv):
    opts = parse(argv)
    binary = Path(os.environ.get("RESNEXT_BIN", ROOT / "target/release/resnext")).resolve()
    python = os.environ.get("PYTHON", str(ROOT / ".venv/bin/python"))
    # A bare name is looked up on PATH, a path is taken from here (before the chdir below).
    python = (shutil.which(python) or python) if "/" not in python else str(Path(python).absolute())
    os.chdir(ROOT)  # where resnext finds data/cifar-10-batches-bin, as under `make`
    threads = len(os.sched_getaffinity(0))  # the cores this process may use, as nproc counts them
    # The CPU as the binary sees it, and the malloc tunables it sets for itself, given to the peer too.
    cpu = json_of([binary, "info", "--json"])["cpu"]
    native = cpu["native_bf16"]
    peer_env = dict(os.environ)
    if cpu["malloc_tuning"]:
        name, value = cpu["malloc_tuning"].split("=", 1)
        peer_env[name] = value
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu['model']}, {threads} cores, "
          f"native bf16: {native or 'no'}")
    measured = []

    def ours(label, mode, precision, steps, warmup, *more, round_):
        cmd = [binary, "bench", "my_resnext", "--device", "cpu", "--mode", mode, "--precision", precision,
               "--batch", BATCH, "--steps", steps, "--warmup", warmup, "--json", *more]
        measured.append(Measured(round_, label, mode, precision, json_of(cmd)))
        print(describe(measured[-1]), flush=True)

    def peer(label, mode, precision, steps, warmup, *more, round_):
        cmd = [python, "-W", "ignore", opts["peer"], "--mode", mode, "--precision", precision, "--batch", BATCH,
               "--threads", threads, "--channels-last", "--steps", steps, "--warmup", warmup, "--json", *more]
        measured.append(Measured(round_, label, mode, precision, json_of(cmd, peer_env)))
        print(describe(measured[-1]), flush=True)

    for p in ("fp32", "bf16"):
        if opts["precision"] not in ("both", p):
            continue
        train, evaluate = ((5, 1), (10, 2)) if p == "fp32" or native else ((1, 1), (3, 1))
        for r in range(1, opts["rounds"] + 1):
            ours("ours", "train", p, *train, round_=str(r))
            peer("peer", "train", p, *train, round_=str(r))
            ours("ours-unfused", "train", p, *train, "--fused", "false", round_=str(r))
            if p == "bf16":  # compiling takes about a minute, in the warm-up steps (not timed)
                peer("peer-compiled", "train", p, train[0], 2, "--compile", round_=str(r))
            ours("ours", "eval", p, *evaluate, round_=str(r))
            peer("peer", "eval", p, *evaluate, round_=str(r))
        if opts["profile"]:
            ours("ours", "train", p, 1, 1, "--profile", opts["profile"], round_="profile")
            peer("peer", "train", p, 1, 1, "--profile", opts["profile"], round_="profile")
    print()
    print("\n".join(ratios(measured) + ceilings(measured)))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except BadOption as refused:
        print(f"bench-cpu: {refused}", file=sys.stderr)
        sys.exit(2)
    except Failed as failed:
        print(f"bench-cpu: {failed}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
