"""The PyTorch peer: the blog's ResNeXt for CIFAR-10 written as a PyTorch user writes it (eager,
nn.Module, torch.optim.SGD), with Keras's settings, and a timing harness. scripts/bench-cpu.sh and
scripts/gpu-check.sh run it beside `resnext bench` so that our speed is measured against what a
PyTorch user gets on the same machine. It needs only torch.

The network matches ours in function and parameter count (ResNeXt-29 8x16d: 5,671,872 in all,
5,646,656 trainable, 25,216 BatchNorm statistics): BatchNorm with Keras's eps 1e-3 and momentum
0.99 (PyTorch's 0.01), TensorFlow's 'same' padding (a stride-2 3x3 convolution on an even input
pads 0 before and 1 after), truncated he_normal weights, a dense layer without bias, SGD with
Nesterov momentum 0.9 and Keras's L2 5e-4 on conv and dense kernels (a weight decay of 1e-3 on
them, none on BatchNorm).

    python bench/torch_peer.py --mode train --precision bf16 --channels-last --batch 64
    python bench/torch_peer.py --mode eval --device cuda --tf32 on --compile reduce-overhead

Prints the parameter counts, then one `RESULT` line: median ms per step and images per second;
with --json, only the measurement as one JSON object (the fields of `resnext bench --json`).
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # Keras's momentum 0.99
L2 = 5e-4


def same_padding(size, kernel, stride):
    """TensorFlow's 'same' padding of one dimension: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Conv2d):
    """A bias-free convolution with TensorFlow 'same' padding for an input of `size` x `size`."""

    def __init__(self, c_in, c_out, kernel, stride, size, groups=1):
        before, after = same_padding(size, kernel, stride)
        symmetric = before == after
        super().__init__(c_in, c_out, kernel, stride, padding=before if symmetric else 0, groups=groups, bias=False)
        self.extra = None if symmetric else (before, after, before, after)

    def forward(self, x):
        return super().forward(x if self.extra is None else F.pad(x, self.extra))


def batch_norm(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class Block(nn.Module):
    """conv 1x1 -> BN -> ReLU -> grouped conv 3x3 (stride) -> BN -> ReLU -> conv 1x1 (2f) -> BN, plus
    the shortcut (a projection when the channels change), then ReLU."""

    def __init__(self, c_in, width, cardinality, stride, size):
        super().__init__()
        out = size // stride
        self.residual = nn.Sequential(
            SameConv(c_in, width, 1, 1, size), batch_norm(width), nn.ReLU(inplace=True),
            SameConv(width, width, 3, stride, size, groups=cardinality), batch_norm(width), nn.ReLU(inplace=True),
            SameConv(width, 2 * width, 1, 1, out), batch_norm(2 * width),
        )
        self.shortcut = None
        if c_in != 2 * width:
            self.shortcut = nn.Sequential(SameConv(c_in, 2 * width, 1, stride, size), batch_norm(2 * width))

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.residual(x) + skip)


class ResNeXt(nn.Module):
    """Stem conv 3x3 (64) -> BN -> ReLU; three stages of (depth - 2) / 9 blocks of grouped width
    cardinality * width * 2^stage (stride 2 at the start of stages 2 and 3); global average
    pooling; dense layer without bias."""

    def __init__(self, depth=29, cardinality=8, width=16, classes=10):
        super().__init__()
        layers = [SameConv(3, 64, 3, 1, 32), batch_norm(64), nn.ReLU(inplace=True)]
        c_in, size = 64, 32
        for stage in range(3):
            grouped = cardinality * width * 2**stage
            for index in range((depth - 2) // 9):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(Block(c_in, grouped, cardinality, stride, size))
                c_in, size = 2 * grouped, size // stride
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, classes, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                he_normal_(module.weight)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def he_normal_(weight):
    """Keras's he_normal: a normal cut at 2 standard deviations, scaled so that the realised std
    is sqrt(2 / fan_in) (0.8796 is the std of a standard normal cut at +-2)."""
    fan_in = weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def counts(model):
    """(total, trainable, non-trainable) as Keras counts them: BatchNorm's moving mean and variance
    are non-trainable parameters (PyTorch's batch counters are not parameters at all)."""
    trainable = sum(p.numel() for p in model.parameters())
    statistics_ = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable + statistics_, trainable, statistics_


def optimizer(model, lr=0.01):
    """SGD with Nesterov momentum; Keras's L2 on conv and dense kernels as a weight decay of 2 * l2."""
    kernels = [p for p in model.parameters() if p.dim() > 1]
    others = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": kernels, "weight_decay": 2 * L2}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["train", "eval", "count"], default="train",
                    help="train: forward, backward and SGD step; eval: inference forward; count: parameters only")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: torch.autocast(device, dtype=torch.bfloat16), float32 weights and loss")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--channels-last", action="store_true", help="model and inputs in torch.channels_last")
    ap.add_argument("--tf32", choices=["on", "off"], default="off",
                    help="TensorFloat-32 in float32 convolutions (cuDNN) and matrix products (cuBLAS), set "
                         "explicitly either way (default off, as resnext's fp32)")
    ap.add_argument("--compile", nargs="?", const="default", default="none",
                    choices=["none", "default", "reduce-overhead"],
                    help="torch.compile the model (mode default, or reduce-overhead: CUDA graphs on a GPU); the "
                         "compile time is reported apart")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (the median is reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1 with --compile)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads [default: torch's]")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after timing, profile N more steps (torch.profiler, self CPU time) and print them by "
                         "operator class and operator, as `resnext bench --profile N` does")
    ap.add_argument("--json", action="store_true",
                    help="print the measurement as one JSON object, with the fields of `resnext bench --json`")
    ap.add_argument("--depth", type=int, default=29)
    ap.add_argument("--cardinality", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    tf32 = args.tf32 == "on"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    model = ResNeXt(args.depth, args.cardinality, args.width)
    total, trainable, non_trainable = counts(model)
    name = f"ResNeXt-{args.depth} {args.cardinality}x{args.width}d"
    params = {"total": total, "trainable": trainable, "non_trainable": non_trainable}
    if args.json and args.mode == "count":
        print(json.dumps({"model": name, "params": params}, indent=2))
        return
    if not args.json:
        print(f"torch {torch.__version__}, {device}, threads {torch.get_num_threads()}, {name}")
        print(f"params: total {total:,}, trainable {trainable:,}, non-trainable {non_trainable:,}")
    if args.mode == "count":
        return
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    model.train(args.mode == "train")
    run = model if args.compile == "none" else torch.compile(model, mode=args.compile)
    opt = optimizer(model)
    images = torch.randn(args.batch, 3, 32, 32, device=device).to(memory_format=memory_format)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step():
        if args.mode == "train":
            opt.zero_grad(set_to_none=True)
            with autocast:
                logits = run(images)
            F.cross_entropy(logits.float(), labels).backward()
            opt.step()
        else:
            with torch.no_grad(), autocast:
                run(images)
        if cuda:
            torch.cuda.synchronize(device)

    seconds = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if i >= args.warmup:
            seconds.append(time.perf_counter() - start)
        elif i == 0:
            first = time.perf_counter() - start
    median = statistics.median(seconds)
    # The fields of `resnext bench --json`, so that scripts read both alike.
    measurement = {
        "program": "torch_peer", "mode": args.mode, "precision": args.precision, "device": str(device),
        "batch": args.batch, "threads": torch.get_num_threads(), "steps": args.steps, "warmup": args.warmup,
        "ms_per_step": median * 1000, "images_per_second": args.batch / median,
        "best_images_per_second": args.batch / min(seconds), "peak_rss_mib": peak_rss_mib(),
        "aten_ops_per_step": None,
        "first_step_seconds": first if args.compile != "none" and args.warmup else None,
        "profile": profile(step, args.profile) if args.profile else None,
        "model": name, "params": params, "torch": torch.__version__, "channels_last": args.channels_last,
        "tf32": args.tf32, "compile": args.compile,
    }
    print(json.dumps(measurement, indent=2) if args.json else result_text(measurement))


def result_text(m):
    """The RESULT line and any PROFILE lines, for people."""
    first_step = f", first step {m['first_step_seconds']:.1f} s (compiles)" if m["first_step_seconds"] else ""
    text = (f"RESULT mode={m['mode']} precision={m['precision']} device={m['device']} batch={m['batch']} "
            f"channels_last={int(m['channels_last'])} tf32={m['tf32']} compile={m['compile']} "
            f"median {m['ms_per_step']:.1f} ms/step, {m['images_per_second']:.1f} img/s "
            f"(best {m['best_images_per_second']:.1f}) over {m['steps']} steps after {m['warmup']} warm-up"
            f"{first_step}; peak RSS {m['peak_rss_mib']:.0f} MiB")
    if p := m["profile"]:
        text += f"\nPROFILE {p['steps']} steps, {p['ms_per_step']:.1f} ms/step of operator self time"
        for row in p["classes"]:
            text += f"\nPROFILE class {row['name']:<22} {row['percent']:5.1f}% {row['ms_per_step']:8.1f} ms/step"
        for row in p["ops"]:
            text += (f"\nPROFILE op {row['name']:<40} {row['percent']:5.1f}% {row['ms_per_step']:8.1f} ms/step "
                     f"{row['calls_per_step']:5d} calls/step")
    return text


def peak_rss_mib():
    """The process's peak resident memory (getrusage, in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def op_class(name):
    """The class of an operator, as `resnext bench --profile` names them (src/bench.rs, op_class)."""
    op = name.split("::")[-1]
    if "conv" in op:
        return "convolution"
    if "batch_norm" in op:
        return "BatchNorm"
    if "relu" in op or op.startswith("threshold") or op.startswith("clamp"):
        return "ReLU"
    if op in ("add", "add_"):
        return "add"
    if "copy" in op or op in ("to", "contiguous", "clone"):
        return "copies"
    if op.startswith("_foreach"):
        return "optimizer (foreach)"
    return "other"


def profile(step, steps):
    """Self CPU time of `steps` steps by operator class and the ten slowest operators, per step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    # Operators only: the autograd engine's own records and the optimizer's wrapper are not ops.
    ops = [e for e in prof.key_averages() if "::" in e.key and not e.key.startswith("autograd::")]
    total = sum(e.self_cpu_time_total for e in ops)
    row = lambda name, us: {"name": name, "ms_per_step": us / 1000 / steps, "percent": 100 * us / total}
    classes = {}
    for e in ops:
        classes[op_class(e.key)] = classes.get(op_class(e.key), 0) + e.self_cpu_time_total
    return {
        "steps": steps, "ms_per_step": total / 1000 / steps,
        "classes": [row(name, us) for name, us in sorted(classes.items(), key=lambda kv: -kv[1])],
        "ops": [row(e.key, e.self_cpu_time_total) | {"calls_per_step": e.count // steps}
                for e in sorted(ops, key=lambda e: -e.self_cpu_time_total)[:10]],
    }


if __name__ == "__main__":
    sys.exit(main())
