"""The PyTorch peer (bench/torch_peer.py) is the blog's network: the Keras parameter counts,
TensorFlow's 'same' padding and Keras's BatchNorm step (against the Keras reference vectors in
tests/golden/keras), and one step of each mode and setting runs and reports its speed.

Run by `make test` with the project venv:  .venv/bin/python tests/python/test_peer.py
"""
import contextlib
import io
import json
import re
import sys
import unittest

import torch

from harness import ROOT, main

sys.path.insert(0, str(ROOT / "bench"))
import torch_peer  # noqa: E402

GOLDEN = ROOT / "tests/golden/keras"


def tensor(value):
    return torch.tensor(value["data"], dtype=torch.float32).reshape(value["shape"])


def run_peer(*args):
    """torch_peer's output for `args`."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        torch_peer.main([str(a) for a in args])
    return out.getvalue()


class NetworkTest(unittest.TestCase):
    def test_the_keras_parameter_counts(self):
        self.assertEqual(torch_peer.counts(torch_peer.ResNeXt()), (5_671_872, 5_646_656, 25_216))
        # titu1994's default width.
        self.assertEqual(torch_peer.counts(torch_peer.ResNeXt(width=64))[0], 89_700_288)
        self.assertIn("params: total 5,671,872, trainable 5,646,656, non-trainable 25,216", run_peer("--mode", "count"))

    def test_same_padding_matches_tensorflow(self):
        reference = json.loads((GOLDEN / "tf_same_padding.json").read_text())
        for case in reference["conv2d"]:
            x = tensor(case["input_nhwc"]).permute(0, 3, 1, 2)
            kernel = tensor(case["kernel_hwio"]).permute(3, 2, 0, 1)
            conv = torch_peer.SameConv(kernel.shape[1], kernel.shape[0], case["kernel_size"], case["strides"],
                                       x.shape[2])
            with torch.no_grad():
                conv.weight.copy_(kernel)
                y = conv(x).permute(0, 2, 3, 1)
            want = tensor(case["output_nhwc"])
            self.assertEqual(y.shape, want.shape, case["name"])
            self.assertLess((y - want).abs().max().item(), 1e-4, case["name"])

    def test_batch_norm_matches_a_keras_training_step(self):
        reference = json.loads((GOLDEN / "batch_normalization.json").read_text())
        example = reference["train_step_example"]
        x = tensor(example["input_nhwc"]).permute(0, 3, 1, 2)
        bn = torch_peer.batch_norm(x.shape[1]).train()
        nhwc = lambda t: t.permute(0, 2, 3, 1).flatten()
        close = lambda got, want: self.assertLess((got - torch.tensor(want)).abs().max().item(), 1e-5)
        with torch.no_grad():
            close(nhwc(bn(x)), example["output_training_true"]["data"])
            close(bn.running_mean, example["moving_mean_after"])
            close(bn.running_var, example["moving_variance_after"])
            close(nhwc(bn.eval()(x)), example["output_training_false_after"]["data"])

    def test_only_kernels_get_the_l2_decay(self):
        groups = torch_peer.optimizer(torch_peer.ResNeXt(depth=11, cardinality=2, width=2)).param_groups
        self.assertEqual([g["weight_decay"] for g in groups], [1e-3, 0.0])
        self.assertTrue(all(p.dim() in (2, 4) for p in groups[0]["params"]))
        self.assertTrue(all(p.dim() == 1 for p in groups[1]["params"]))


class HarnessTest(unittest.TestCase):
    def test_one_step_of_each_mode_and_setting_reports_its_speed(self):
        for extra in [(), ("--precision", "bf16"), ("--channels-last",), ("--tf32", "on")]:
            for mode in ["train", "eval"]:
                text = run_peer("--mode", mode, "--batch", 2, "--steps", 1, "--warmup", 1, "--threads", 1, *extra)
                result = [line for line in text.splitlines() if line.startswith("RESULT ")]
                self.assertEqual(len(result), 1, text)
                self.assertRegex(result[0], rf"mode={mode} .* median [0-9.]+ ms/step, [0-9.]+ img/s", text)

    def test_json_is_the_whole_output_with_the_fields_of_resnext_bench(self):
        text = run_peer("--mode", "train", "--depth", 11, "--cardinality", 2, "--width", 2, "--batch", 4,
                        "--steps", 2, "--warmup", 1, "--threads", 1, "--profile", 1, "--json")
        measured = json.loads(text)
        # The fields that scripts/bench_cpu.py and scripts/gpu_check.py read from both programs.
        self.assertEqual((measured["program"], measured["mode"], measured["device"], measured["batch"],
                          measured["steps"], measured["warmup"]), ("torch_peer", "train", "cpu", 4, 2, 1))
        self.assertAlmostEqual(measured["images_per_second"], 4000 / measured["ms_per_step"], places=6)
        self.assertGreaterEqual(measured["best_images_per_second"], measured["images_per_second"])
        self.assertGreater(measured["peak_rss_mib"], 0)
        self.assertIsNone(measured["first_step_seconds"])
        classes = measured["profile"]["classes"]
        self.assertIn("convolution", [row["name"] for row in classes])
        self.assertAlmostEqual(sum(row["percent"] for row in classes), 100.0, delta=0.01)
        self.assertAlmostEqual(sum(row["ms_per_step"] for row in classes), measured["profile"]["ms_per_step"], places=6)

    def test_a_compiled_step_runs_and_reports_its_compile_time(self):
        text = run_peer("--mode", "eval", "--depth", 11, "--cardinality", 2, "--width", 2, "--batch", 4,
                        "--steps", 1, "--warmup", 1, "--compile")
        self.assertRegex(text, r"compile=default median [0-9.]+ ms/step, .* first step [0-9.]+ s \(compiles\)")

    def test_a_profile_gives_self_time_by_operator_class_and_the_slowest_operators(self):
        text = run_peer("--mode", "train", "--depth", 11, "--cardinality", 2, "--width", 2, "--batch", 4,
                        "--steps", 1, "--warmup", 1, "--threads", 1, "--profile", 2)
        classes = re.findall(r"^PROFILE class (.+?) +([0-9.]+)% +([0-9.]+) ms/step$", text, re.M)
        names = [name for name, _, _ in classes]
        for expected in ("convolution", "BatchNorm", "ReLU"):
            self.assertIn(expected, names, text)
        self.assertAlmostEqual(sum(float(share) for _, share, _ in classes), 100.0, delta=0.5)
        ops = re.findall(r"^PROFILE op (\S+) ", text, re.M)
        self.assertTrue(0 < len(ops) <= 10 and any("convolution" in op for op in ops), text)

    def test_operator_classes_are_the_ones_resnext_bench_uses(self):
        # The same names as src/bench.rs's op_class test.
        for name, expected in [("aten::convolution_backward", "convolution"), ("aten::mkldnn_convolution", "convolution"),
                               ("aten::native_batch_norm_backward", "BatchNorm"), ("aten::threshold_backward", "ReLU"),
                               ("aten::clamp_min_", "ReLU"), ("aten::add_", "add"), ("aten::copy_", "copies"),
                               ("aten::_foreach_add_", "optimizer (foreach)"), ("aten::empty", "other")]:
            self.assertEqual(torch_peer.op_class(name), expected, name)

    def test_a_train_step_lowers_the_loss_on_a_fixed_batch(self):
        torch.manual_seed(0)
        model = torch_peer.ResNeXt(depth=11, cardinality=2, width=2)
        opt = torch_peer.optimizer(model, lr=0.05)
        x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        self.assertLess(losses[-1], losses[0], losses)


if __name__ == "__main__":
    main()
