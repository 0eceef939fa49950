"""Golden vectors for the per-step lr rules, from torch.optim.lr_scheduler itself.

Run with the project's venv:  .venv/bin/python scripts/golden/lr_schedules.py > tests/golden/lr_schedules.json
Each case records the lr the optimizer holds during every step (read before opt.step()).
"""
import json
import sys

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, OneCycleLR, SequentialLR


def trace(make, steps, lr):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)
    scheduler = make(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


def main():
    epochs, steps_per_epoch = 10, 50
    total = epochs * steps_per_epoch
    warmup = 75  # 1.5 epochs
    cases = [
        {
            "name": "cosine",
            "rule": {"rule": "cosine", "min_lr": 0.001},
            "lr": 0.1,
            "warmup": None,
            "torch": f"CosineAnnealingLR(T_max={total}, eta_min=0.001)",
            "lrs": trace(lambda o: CosineAnnealingLR(o, T_max=total, eta_min=0.001), total, 0.1),
        },
        {
            "name": "warmup_then_cosine",
            "rule": {"rule": "cosine", "min_lr": 0.0},
            "lr": 0.2,
            "warmup": {"epochs": warmup / steps_per_epoch, "start_factor": 0.1},
            "torch": f"SequentialLR([LinearLR(start_factor=0.1, total_iters={warmup}), "
                     f"CosineAnnealingLR(T_max={total - warmup})], milestones=[{warmup}])",
            "lrs": trace(lambda o: SequentialLR(o, [LinearLR(o, start_factor=0.1, total_iters=warmup),
                                                    CosineAnnealingLR(o, T_max=total - warmup)],
                                                milestones=[warmup]), total, 0.2),
        },
        {
            "name": "one_cycle_linear",
            "rule": {"rule": "one_cycle", "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4,
                     "down": "linear"},
            "lr": 0.4,
            "warmup": None,
            "torch": f"OneCycleLR(max_lr=0.4, total_steps={total}, pct_start=0.3, anneal_strategy='linear', "
                     "div_factor=25, final_div_factor=1e4, cycle_momentum=False)",
            "lrs": trace(lambda o: OneCycleLR(o, max_lr=0.4, total_steps=total, pct_start=0.3,
                                              anneal_strategy="linear", div_factor=25.0, final_div_factor=1e4,
                                              cycle_momentum=False), total, 0.4),
        },
    ]
    # One case per line, so a change shows as a changed case in a diff.
    header = {"torch": torch.__version__, "epochs": epochs, "steps_per_epoch": steps_per_epoch}
    lines = ",\n  ".join(json.dumps(case) for case in cases)
    sys.stdout.write(json.dumps(header)[:-1] + ', "cases": [\n  ' + lines + "\n]}\n")


if __name__ == "__main__":
    main()
