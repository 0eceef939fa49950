#!/usr/bin/env python3
"""Writes report.json and report.md of scripts/gpu-check.sh from the records it collected.

Usage: scripts/gpu-check-report.py OUT_DIR   (reads OUT_DIR/records.tsv and OUT_DIR/info.txt)

records.tsv has one record a line, fields separated by tabs, the first naming its kind:
  check NAME OK DETAIL | fact KEY VALUE | bench WHO MODE PRECISION ROUND IMAGES/S MS/STEP OPS SIZES MODEL
  train EPOCH IMAGES/S VAL_ACCURACY SECONDS | export EVAL_ACC PY_ACC MAX_DIFF RAN_ON EVAL_BF16_ACC IMAGES
  run_all_run NAME EXP IMAGES/S SECONDS | run_all NAME SUM_IMAGES/S WALL_SECONDS TRAIN_IMAGES | phase NAME SECONDS
Standard library only: it runs wherever python3 does.
"""
import json
import statistics
import sys
from pathlib import Path


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def main(out):
    rows = [line.rstrip("\n").split("\t") for line in (out / "records.tsv").read_text().splitlines() if line]
    facts = {r[1]: (r[2] if len(r) > 2 else "") for r in rows if r[0] == "fact"}
    checks = [{"name": r[1], "ok": r[2] == "1", "detail": r[3] if len(r) > 3 else ""} for r in rows if r[0] == "check"]
    bench = [
        {"who": r[1], "mode": r[2], "precision": r[3], "round": int(r[4]), "images_per_second": number(r[5]),
         "ms_per_step": number(r[6]), "aten_ops": None if r[7] == "-" else int(r[7]), "sizes": r[8], "model": r[9]}
        for r in rows if r[0] == "bench"
    ]
    summary = []
    for mode in ("train", "eval"):
        for precision in ("fp32", "bf16"):
            def median(who):
                values = [b["images_per_second"] for b in bench
                          if (b["who"], b["mode"], b["precision"]) == (who, mode, precision)]
                return statistics.median(values) if values else None
            ours, peer = median("ours"), median("peer")
            ops = next((b["aten_ops"] for b in bench if (b["who"], b["mode"], b["precision"]) == ("ours", mode, precision)), None)
            summary.append({"mode": mode, "precision": precision, "ours": ours, "peer": peer, "aten_ops": ops,
                            "ratio": ours / peer if ours and peer else None})
    partial = facts.get("partial_data") == "1"
    data = facts.get("data", "")
    train = [{"epoch": int(r[1]), "images_per_second": number(r[2]), "val_accuracy": number(r[3]),
              "epoch_seconds": number(r[4])} for r in rows if r[0] == "train"]
    export = next(({"eval_accuracy_percent": number(r[1]), "export_accuracy_percent": number(r[2]),
                    "max_logit_difference": number(r[3]), "ran_on": r[4], "eval_bf16_accuracy_percent": number(r[5]),
                    "images": int(r[6])} for r in rows if r[0] == "export"), None)
    run_all = {r[1]: {"sum_images_per_second": number(r[2]), "wall_seconds": number(r[3]),
                      "train_images": int(r[4]), "runs": []} for r in rows if r[0] == "run_all"}
    for r in rows:
        if r[0] == "run_all_run" and r[1] in run_all:
            run_all[r[1]]["runs"].append({"experiment": r[2], "images_per_second": number(r[3]),
                                          "epoch_seconds": number(r[4])})
    for entry in run_all.values():
        wall, images = entry["wall_seconds"], entry["train_images"]
        entry["images_per_wall_second"] = images / wall if wall else None
    five, one = run_all.get("run-all-5"), run_all.get("run-all-1")
    speedup = None
    if five and one and five["sum_images_per_second"] and one["sum_images_per_second"]:
        speedup = {"by_epoch_speed": five["sum_images_per_second"] / one["sum_images_per_second"],
                   "by_wall_clock": (five["images_per_wall_second"] / one["images_per_wall_second"])
                   if five["images_per_wall_second"] and one["images_per_wall_second"] else None}
    report = {
        "passed": all(c["ok"] for c in checks),
        "date": facts.get("date"), "host": facts.get("host"), "commit": facts.get("commit"),
        "device": facts.get("device"), "quick": facts.get("quick") == "1",
        "gpu": facts.get("gpu") or None, "gpu_detail": facts.get("gpu_detail") or None,
        "driver": facts.get("driver"), "libtorch": facts.get("libtorch"), "cpu": facts.get("cpu"),
        "nvidia_smi": facts.get("nvidia_smi"), "ld_library_path": facts.get("ld_library_path"),
        "data": data, "partial_data": partial, "seconds": number(facts.get("seconds")),
        "phase_seconds": {r[1]: number(r[2]) for r in rows if r[0] == "phase"},
        "checks": checks,
        "bench": bench, "bench_summary": summary,
        "interrupt_resume": {"command": facts.get("train_command"), "epochs": train, "accuracy_measured_on": data},
        "export": export and {**export, "accuracy_measured_on": data},
        "run_all": {"per_gpu_5": five, "alone": one, "speedup": speedup},
        "warnings": facts.get("warnings"), "peer_warnings": facts.get("peer_warnings"),
        "info": (out / "info.txt").read_text() if (out / "info.txt").exists() else None,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))


def cell(text):
    """Text for a Markdown table cell."""
    return text.replace("|", "\\|")


def fmt(value, digits=1, suffix=""):
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def markdown(r):
    label = " (partial data: see above)" if r["partial_data"] else ""
    where = r["gpu_detail"] or r["cpu"] or "?"
    lines = [
        f"# gpu-check: {'passed' if r['passed'] else 'FAILED'}",
        "",
        f"- date: {r['date']}, host {r['host']}, commit {r['commit']}, {r['seconds']:.0f} s in all"
        if r["seconds"] is not None else f"- date: {r['date']}",
        f"- device: {r['device']}{' (--quick: tiny sizes, the speeds mean nothing)' if r['quick'] else ''}: {where}",
        f"- NVIDIA driver: {r['driver']}; libtorch {r['libtorch']}",
        f"- data: {r['data']}",
    ]
    if r["phase_seconds"]:
        lines.append("- seconds per step: " + ", ".join(f"{k} {v:.0f}" for k, v in r["phase_seconds"].items()))
    if r["ld_library_path"]:
        lines.append(f"- libtorch found through python3's torch: LD_LIBRARY_PATH={r['ld_library_path']}")
    lines += ["", "## Checks", "", "| check | | detail |", "|---|---|---|"]
    lines += [f"| {c['name']} | {'ok' if c['ok'] else '**FAIL**'} | {cell(c['detail'])} |" for c in r["checks"]]
    lines += ["", "## Benchmarks", "",
              "Median images/s over the rounds (ours `resnext bench`, the peer `bench/torch_peer.py`, same device, "
              "alternating).", "",
              "| mode | precision | ours | peer | ours / peer | ATen ops per step (ours) |", "|---|---|---|---|---|---|"]
    for s in r["bench_summary"]:
        ops = "-" if s["aten_ops"] is None else str(s["aten_ops"])
        lines.append(f"| {s['mode']} | {s['precision']} | {fmt(s['ours'])} | {fmt(s['peer'])} | "
                     f"{fmt(s['ratio'], 2, 'x')} | {ops} |")
    lines += ["", "Every round:", "", "| who | mode | precision | round | images/s | ms/step | sizes | model |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {b['who']} | {b['mode']} | {b['precision']} | {b['round']} | {fmt(b['images_per_second'])} | "
              f"{fmt(b['ms_per_step'])} | {b['sizes']} | {b['model']} |" for b in r["bench"]]
    ir = r["interrupt_resume"]
    lines += ["", "## Interrupt and resume", "", f"`{ir['command']}`: SIGINT in epoch 1, then `--resume`.", "",
              f"| epoch | images/s | val_accuracy{label} | seconds |", "|---|---|---|---|"]
    lines += [f"| {e['epoch']} | {fmt(e['images_per_second'])} | {fmt(e['val_accuracy'], 4)} | "
              f"{fmt(e['epoch_seconds'])} |" for e in ir["epochs"]]
    lines += ["", "## Export", ""]
    e = r["export"]
    if e:
        lines += [f"On {e['images']} test images{label}: `resnext eval` (fp32) {fmt(e['eval_accuracy_percent'], 2, '%')}, "
                  f"the TorchScript export in torch on {e['ran_on']} {fmt(e['export_accuracy_percent'], 2, '%')} "
                  f"(max logit difference {e['max_logit_difference']:.2e}); `resnext eval --precision bf16` "
                  f"{fmt(e['eval_bf16_accuracy_percent'], 2, '%')}."]
    else:
        lines.append("Not run.")
    ra = r["run_all"]
    lines += ["", "## run-all", "", "One epoch of each blog experiment, five at once on one GPU (`--per-gpu 5`), "
              "against my_resnext alone.", "",
              "| | runs | sum of the runs' images/s | train images / wall second | wall seconds |", "|---|---|---|---|---|"]
    for name, entry in (("--per-gpu 5", ra["per_gpu_5"]), ("alone", ra["alone"])):
        if entry:
            lines.append(f"| {name} | {len(entry['runs'])} | {fmt(entry['sum_images_per_second'])} | "
                         f"{fmt(entry['images_per_wall_second'])} | {fmt(entry['wall_seconds'], 0)} |")
    if ra["speedup"]:
        s = ra["speedup"]
        lines += ["", f"Five at once against one alone: {fmt(s['by_epoch_speed'], 2, 'x')} by the runs' epoch speeds, "
                  f"{fmt(s['by_wall_clock'], 2, 'x')} by wall clock (start-up and evaluation included)."]
    if r["warnings"]:
        lines += ["", "## Warnings in our commands' stderr", "", "```", r["warnings"], "```"]
    if r["peer_warnings"]:
        lines += ["", "Printed by the peer or torch in Python (not counted): `" + r["peer_warnings"] + "`"]
    lines += ["", "## resnext info", "", "```", (r["info"] or "").rstrip(), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) == 2 else 2)
    main(Path(sys.argv[1]))
