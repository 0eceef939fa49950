#!/usr/bin/env python3
"""Writes report.json and report.md of scripts/gpu-check.sh from the records it has collected so
far: run after every phase, so that a check stopped at any moment leaves a report.

Usage: scripts/gpu-check-report.py WORK OUT   (reads WORK/records.tsv and WORK/info.txt, writes
                                               OUT/report.json and OUT/report.md)

records.tsv has one record a line, fields separated by tabs, the first naming its kind:
  check NAME OK DETAIL | skip NAME DETAIL | fact KEY VALUE | phase NAME SECONDS STATUS
  bench WHO PHASE ARGS IMAGES/S MS/STEP OPS GPU_BUSY% MODEL [COMPILE_SECONDS]
  train EPOCH IMAGES/S VAL_ACCURACY SECONDS | export EVAL_ACC PY_ACC MAX_DIFF RAN_ON EVAL_BF16_ACC IMAGES
  run_all_run NAME EXP IMAGES/S SECONDS | run_all NAME SUM_IMAGES/S WALL_SECONDS TRAIN_IMAGES
Standard library only: it runs wherever python3 does.
"""
import json
import os
import sys
from pathlib import Path

PHASES = ["info", "bench-64", "bench-512", "memory-format", "peer-compiled", "train-resume", "eval-export", "run-all"]


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def field(row, i):
    return row[i] if len(row) > i else ""


def collect(work):
    rows = [line.rstrip("\n").split("\t") for line in (work / "records.tsv").read_text().splitlines() if line]
    facts = {}
    for r in rows:
        if r[0] == "fact":
            facts[r[1]] = field(r, 2)
    checks = [{"name": r[1], "ok": r[2] == "1", "detail": field(r, 3)} for r in rows if r[0] == "check"]
    skipped = [{"name": r[1], "detail": field(r, 2)} for r in rows if r[0] == "skip"]
    phases = {r[1]: {"seconds": number(r[2]), "status": field(r, 3)} for r in rows if r[0] == "phase"}
    bench = [
        {"who": r[1], "phase": r[2], "args": r[3], "images_per_second": number(r[4]), "ms_per_step": number(r[5]),
         "aten_ops": None if r[6] == "-" else int(r[6]), "gpu_busy_percent": number(r[7]), "model": r[8],
         "first_step_seconds": number(field(r, 9))}
        for r in rows if r[0] == "bench"
    ]
    # Ours against the peer, for the same arguments in the same phase.
    pairs = []
    for b in bench:
        if b["who"] != "ours":
            continue
        peer = next((p for p in bench if p["who"] == "peer" and p["phase"] == b["phase"] and p["args"] == b["args"]), None)
        if peer:
            ratio = b["images_per_second"] / peer["images_per_second"] if peer["images_per_second"] else None
            pairs.append({"phase": b["phase"], "args": b["args"], "ours": b["images_per_second"],
                          "peer": peer["images_per_second"], "ratio": ratio,
                          "ours_gpu_busy_percent": b["gpu_busy_percent"], "peer_gpu_busy_percent": peer["gpu_busy_percent"]})
    data = facts.get("data", "")
    train_images = facts.get("train_images")
    measured_on = f"{data}; runs trained on the first {train_images} training images" if train_images else data
    train = [{"epoch": int(r[1]), "images_per_second": number(r[2]), "val_accuracy": number(r[3]),
              "epoch_seconds": number(r[4])} for r in rows if r[0] == "train"]
    export = next(({"eval_accuracy_percent": number(r[1]), "export_accuracy_percent": number(r[2]),
                    "max_logit_difference": number(r[3]), "ran_on": r[4], "eval_bf16_accuracy_percent": number(r[5]),
                    "test_images": int(r[6])} for r in rows if r[0] == "export"), None)
    run_all = {r[1]: {"sum_images_per_second": number(r[2]), "wall_seconds": number(r[3]),
                      "train_images": int(r[4]), "runs": []} for r in rows if r[0] == "run_all"}
    for r in rows:
        if r[0] == "run_all_run" and r[1] in run_all:
            run_all[r[1]]["runs"].append({"experiment": r[2], "images_per_second": number(r[3]),
                                          "epoch_seconds": number(r[4])})
    for entry in run_all.values():
        wall, images = entry["wall_seconds"], entry["train_images"]
        entry["images_per_wall_second"] = images / wall if wall else None
    finished = facts.get("finished") == "1"
    return {
        "passed": finished and all(c["ok"] for c in checks),
        "finished": finished,
        "date": facts.get("date"), "host": facts.get("host"), "commit": facts.get("commit"),
        "device": facts.get("device"), "quick": facts.get("quick") == "1", "budget_seconds": number(facts.get("budget")),
        "gpu": facts.get("gpu") or None, "gpu_detail": facts.get("gpu_detail") or None,
        "driver": facts.get("driver"), "libtorch": facts.get("libtorch"), "cpu": facts.get("cpu"),
        "nvidia_smi": facts.get("nvidia_smi"),
        "data": data, "train_images": int(train_images) if train_images else None,
        "partial_data": facts.get("partial_data") == "1", "seconds": number(facts.get("seconds")),
        "phases": phases, "checks": checks, "skipped": skipped, "bench": bench, "ours_vs_peer": pairs,
        "interrupt_resume": {"command": facts.get("train_command"), "epochs": train, "accuracy_measured_on": measured_on},
        "export": export and {**export, "accuracy_measured_on": data},
        "run_all": run_all,
        "warnings": facts.get("warnings"), "peer_warnings": facts.get("peer_warnings"),
        "info": (work / "info.txt").read_text() if (work / "info.txt").exists() else None,
    }


def cell(text):
    """Text for a Markdown table cell."""
    return str(text).replace("|", "\\|")


def fmt(value, digits=1, suffix=""):
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def markdown(r):
    status = "passed" if r["passed"] else ("FAILED" if r["finished"] else "in progress (or stopped)")
    where = r["gpu_detail"] or r["cpu"] or "?"
    lines = [
        f"# gpu-check: {status}",
        "",
        f"- date: {r['date']}, host {r['host']}, commit {r['commit']}, {fmt(r['seconds'], 0)} s of a "
        f"{fmt(r['budget_seconds'], 0)} s budget",
        f"- device: {r['device']}{' (--quick: tiny sizes, the speeds mean nothing)' if r['quick'] else ''}: {where}",
        f"- NVIDIA driver: {r['driver']}; libtorch {r['libtorch']}",
        f"- data: {r['data']}",
        "",
        "## Phases",
        "",
        "| phase | seconds | |",
        "|---|---|---|",
    ]
    for name in PHASES:
        p = r["phases"].get(name)
        state = "not reached" if p is None else cell(p["status"])
        lines.append(f"| {name} | {fmt(p and p['seconds'], 0)} | {state} |")
    lines += ["", "## Checks", "", "| check | | detail |", "|---|---|---|"]
    lines += [f"| {c['name']} | {'ok' if c['ok'] else '**FAIL**'} | {cell(c['detail'])} |" for c in r["checks"]]
    lines += [f"| {s['name']} | skipped | {cell(s['detail'])} |" for s in r["skipped"]]
    if r["bench"]:
        lines += ["", "## Speed", "",
                  "Median images/s of each measurement: ours `resnext bench`, the peer `bench/torch_peer.py` "
                  "(eager PyTorch unless it says compile), TF32 off on both, alternating. GPU busy: mean "
                  "utilisation from nvidia-smi while the command ran (a low figure means a host-bound step).", ""]
        if r["ours_vs_peer"]:
            lines += ["| phase | measurement | ours | peer | ours / peer | GPU busy ours / peer |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {p['phase']} | `{cell(p['args'])}` | {fmt(p['ours'])} | {fmt(p['peer'])} | "
                      f"{fmt(p['ratio'], 2, 'x')} | {fmt(p['ours_gpu_busy_percent'], 0, '%')} / "
                      f"{fmt(p['peer_gpu_busy_percent'], 0, '%')} |" for p in r["ours_vs_peer"]]
            lines.append("")
        lines += ["Every measurement:", "", "| who | phase | measurement | images/s | ms/step | ATen ops | GPU busy | "
                  "first step (compile) | model |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {b['who']} | {b['phase']} | `{cell(b['args'])}` | {fmt(b['images_per_second'])} | "
                  f"{fmt(b['ms_per_step'])} | {'-' if b['aten_ops'] is None else b['aten_ops']} | "
                  f"{fmt(b['gpu_busy_percent'], 0, '%')} | {fmt(b['first_step_seconds'], 1, ' s')} | {cell(b['model'])} |"
                  for b in r["bench"]]
    ir = r["interrupt_resume"]
    if ir["epochs"]:
        lines += ["", "## Interrupt and resume", "", f"`{ir['command']}`: SIGINT in epoch 1, then `--resume`.",
                  f"Accuracy on: {ir['accuracy_measured_on']}.", "",
                  "| epoch | images/s | val_accuracy | seconds |", "|---|---|---|---|"]
        lines += [f"| {e['epoch']} | {fmt(e['images_per_second'])} | {fmt(e['val_accuracy'], 4)} | "
                  f"{fmt(e['epoch_seconds'])} |" for e in ir["epochs"]]
    e = r["export"]
    if e:
        lines += ["", "## Export", "",
                  f"On the first {e['test_images']} test images ({e['accuracy_measured_on']}): `resnext eval` (fp32) "
                  f"{fmt(e['eval_accuracy_percent'], 2, '%')}, the TorchScript export in torch on {e['ran_on']} "
                  f"{fmt(e['export_accuracy_percent'], 2, '%')} (max logit difference {e['max_logit_difference']:.2e}); "
                  f"`resnext eval --precision bf16` {fmt(e['eval_bf16_accuracy_percent'], 2, '%')}."]
    if r["run_all"]:
        lines += ["", "## run-all", "", "One epoch of blog experiments several at once on one device (`--per-gpu`), "
                  f"against my_resnext alone; {r['data']}.", "",
                  "| | runs | sum of the runs' images/s | train images / wall second | wall seconds |",
                  "|---|---|---|---|---|"]
        for name, entry in r["run_all"].items():
            lines.append(f"| {name} | {len(entry['runs'])} | {fmt(entry['sum_images_per_second'])} | "
                         f"{fmt(entry['images_per_wall_second'])} | {fmt(entry['wall_seconds'], 0)} |")
    if r["warnings"]:
        lines += ["", "## Warnings in our commands' stderr", "", "```", r["warnings"], "```"]
    if r["peer_warnings"]:
        lines += ["", "Printed by the peer or torch in Python (not counted): `" + r["peer_warnings"] + "`"]
    lines += ["", "## resnext info", "", "```", (r["info"] or "").rstrip(), "```", ""]
    return "\n".join(lines)


def write(path, text):
    """Replaces `path` atomically: a check killed mid-write leaves the previous report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(work, out):
    report = collect(work)
    write(out / "report.json", json.dumps(report, indent=2) + "\n")
    write(out / "report.md", markdown(report))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
