"""A trained run's TorchScript export, loaded in Python, classifies real CIFAR-10 test images
exactly as the Rust program does (logits within 1e-4, same accuracy).

Run by `make test` with the project venv's torch:  .venv/bin/python tests/python/test_export.py
"""
import json
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

from harness import DATA, ROOT, main, resnext

N = 500


def raw_test_images(n):
    """The first n test images as uint8 [n, 3, 32, 32] and their labels, read directly."""
    records = np.fromfile(DATA / "test_batch.bin", dtype=np.uint8).reshape(-1, 3073)[:n]
    return records[:, 1:].reshape(n, 3, 32, 32), records[:, 0].astype(np.int64)


class ExportTest(unittest.TestCase):
    """The plain recipe (tiny.json)."""
    CONFIG = "tests/fixtures/tiny.json"
    EPOCHS = 1

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.run_dir = Path(cls.tmp.name) / "run"
        resnext("train", ROOT / cls.CONFIG, "--out", cls.run_dir, "--epochs", cls.EPOCHS,
                "--train-limit", "3000", "--test-limit", N, "--device", "cpu")
        cls.model_path = cls.run_dir / "model.pt"
        resnext("export", cls.run_dir, "--out", cls.model_path)
        logits_path = Path(cls.tmp.name) / "logits.json"
        cls.eval_text = resnext("eval", cls.run_dir, "--limit", N, "--device", "cpu", "--logits-json", logits_path)
        cls.rust = json.loads(logits_path.read_text())

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def classify(self, images_u8, batch):
        meta = json.loads(Path(f"{self.model_path}.json").read_text())
        mean = torch.tensor(meta["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(meta["std"], dtype=torch.float32).view(1, 3, 1, 1)
        model = torch.jit.load(str(self.model_path))
        x = (torch.from_numpy(images_u8).float() - mean) / std
        with torch.no_grad():
            return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])

    def test_python_logits_match_rust(self):
        images, labels = raw_test_images(N)
        self.assertEqual(labels.tolist(), self.rust["labels"])
        rust_logits = torch.tensor(self.rust["logits"])
        for batch in (N, 7, 1):  # any batch size works
            logits = self.classify(images, batch)
            self.assertEqual(tuple(logits.shape), (N, 10))
            diff = (logits - rust_logits).abs().max().item()
            self.assertLessEqual(diff, 1e-4, f"batch {batch}: max |python - rust| = {diff}")

    def test_python_accuracy_matches_rust_eval(self):
        images, labels = raw_test_images(N)
        predicted = self.classify(images, 100).argmax(1).numpy()
        accuracy = float((predicted == labels).mean())
        self.assertGreater(accuracy, 0.15, "a trained model is above chance")
        self.assertIn(f"accuracy {100 * accuracy:.2f}%", self.eval_text)

    def test_metadata_names_the_classes_and_constants(self):
        meta = json.loads(Path(f"{self.model_path}.json").read_text())
        self.assertEqual(meta["classes"][0], "airplane")
        self.assertEqual(meta["mean"], [125.307, 122.95, 113.865])
        self.assertEqual(meta["std"], [62.9932, 62.0887, 66.7048])
        self.assertEqual(meta["test_time_flip"], "recipe" in self.CONFIG)


class ExportRecipeTest(ExportTest):
    """A recipe with a weight average and flip test-time augmentation: the export is the
    averaged network, and one call averages each image's logits with its mirror image's."""
    CONFIG = "tests/fixtures/tiny_recipe.json"
    EPOCHS = 2

    def test_metadata_says_the_module_averages_both_views(self):
        meta = json.loads(Path(f"{self.model_path}.json").read_text())
        self.assertTrue(meta["test_time_flip"])


def read_safetensors(path):
    """The README's dependency-free reader: {name: tensor} and the metadata dict."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    tensors = {name: torch.frombuffer(bytearray(raw[8 + n + a:8 + n + b]), dtype=torch.float32).reshape(info["shape"])
               for name, info in header.items() for a, b in [info["data_offsets"]]}
    return tensors, metadata


class CheckpointTest(unittest.TestCase):
    def test_checkpoint_loads_in_python_with_documented_names(self):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            resnext("train", ROOT / "tests/fixtures/tiny.json", "--out", run_dir, "--epochs", "1",
                    "--train-limit", "640", "--test-limit", "100", "--device", "cpu")
            tensors, metadata = read_safetensors(run_dir / "last.safetensors")
            self.assertEqual(metadata["format"], "resnext-rs/2")
            self.assertEqual(json.loads(metadata["state"])["epoch"], 1)
            self.assertEqual(tuple(tensors["model.stem.conv.weight"].shape), (64, 3, 3, 3))
            self.assertEqual(tuple(tensors["model.stage1.block1.conv2.weight"].shape), (8, 4, 3, 3))  # 2 groups of 4
            self.assertIn("model.stem.bn.running_var", tensors)
            self.assertIn("velocity.fc.weight", tensors)


if __name__ == "__main__":
    main()
