"""TensorBoard's own loader (EventAccumulator, from the project venv's `tensorboard` package)
reads the event logs of a trained run, and their scalars equal metrics.csv value for value.

Run by `make test` with the project venv:  .venv/bin/python tests/python/test_tensorboard.py

`assert_events_match_csv(test, run_dir)` is the check for any run folder: further cases (a
resumed run, a run killed with SIGKILL) train their run and call it.
"""
import csv
import json
import random
import shutil
import struct
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from harness import BIN, ENV, ROOT, main, resnext

# metrics.csv's columns logged per epoch, under the same names; a run that holds out a
# validation split (config `validation`) has the test set's two columns as well.
EPOCH_TAGS = ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "ce_loss", "val_ce_loss", "images_per_second"]
TEST_TAGS = ["test_loss", "test_accuracy"]


def train_tiny(run_dir, *extra, epochs=2):
    resnext("train", ROOT / "tests/fixtures/tiny.json", "--out", run_dir, "--epochs", epochs,
            "--train-limit", "640", "--test-limit", "100", "--device", "cpu", *extra)


def float32(x):
    """x rounded to float32, as an event's simple_value holds it."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def event_files(run_dir):
    return sorted(p for p in (Path(run_dir) / "tensorboard").iterdir() if "tfevents" in p.name)


def assert_events_match_csv(test, run_dir):
    """The run has one event file, TensorBoard loads it, and each of its epoch tags holds
    exactly metrics.csv's column: one value per row, at step = epoch, equal in float32.
    Returns the loaded accumulator for further checks."""
    files = event_files(run_dir)
    test.assertEqual(len(files), 1, f"one event file in {run_dir}/tensorboard: {files}")
    events = EventAccumulator(str(files[0]), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    test.assertGreater(len(rows), 0)
    tags = EPOCH_TAGS + [tag for tag in TEST_TAGS if tag in rows[0]]
    test.assertEqual(set(tags) - set(events.Tags()["scalars"]), set(), "every epoch tag is there")
    for tag in tags:
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        wanted = [(int(row["epoch"]), float32(float(row[tag]))) for row in rows]
        test.assertEqual(logged, wanted, f"{tag} in {files[0]}")
    return events


class ConvertedRunTest(unittest.TestCase):
    """A run trained by the real binary, given an event log by `resnext tensorboard`."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.results = Path(cls.tmp.name) / "results"
        cls.run_dir = cls.results / "tiny"
        train_tiny(cls.run_dir)
        # As a run from before training wrote event logs (or a copied CSV) has none.
        shutil.rmtree(cls.run_dir / "tensorboard")
        cls.first_output = resnext("tensorboard", cls.results)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_the_log_holds_metrics_csv_value_for_value(self):
        self.assertRegex(self.first_output, r"^wrote .*/tiny/tensorboard/events\.out\.tfevents\.\d{10}\.[^/]+\.resnext: "
                                            r"2 epochs from metrics.csv\n$")
        events = assert_events_match_csv(self, self.run_dir)
        self.assertEqual(sorted(events.Tags()["scalars"]), sorted(EPOCH_TAGS), "no step scalars: the CSV has none")
        # Wall times: epoch 1 after epoch 0, and no later than now; file_version first.
        times = [e.wall_time for e in events.Scalars("loss")]
        self.assertLess(times[0], times[1])
        self.assertLessEqual(events.FirstEventTimestamp(), times[0])

    def test_tensorboard_sees_one_run_per_run_folder(self):
        runs = EventMultiplexer().AddRunsFromDirectory(str(self.results)).Reload().Runs()
        self.assertEqual(list(runs), ["tiny/tensorboard"])
        self.assertIn("val_accuracy", runs["tiny/tensorboard"]["scalars"])

    def test_a_second_call_skips_and_force_rewrites(self):
        self.assertRegex(resnext("tensorboard", self.run_dir), r"^skipped .*tiny: it has an event log")
        before = event_files(self.run_dir)
        self.assertRegex(resnext("tensorboard", "--force", self.run_dir), r"replacing the old one\n$")
        after = event_files(self.run_dir)
        self.assertNotEqual(before, after, "a new name, so that a TensorBoard already watching reads it afresh")
        assert_events_match_csv(self, self.run_dir)

    def test_tensorboard_ignores_a_record_cut_short_at_the_end(self):
        # What a crash in the middle of an append leaves: every whole record is read.
        log = event_files(self.run_dir)[0].read_bytes()
        for cut in (1, 10, 30):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "events.out.tfevents.cut"
                path.write_bytes(log[:-cut])
                events = EventAccumulator(str(path), size_guidance={"scalars": 0})
                events.Reload()
                self.assertEqual([e.step for e in events.Scalars(EPOCH_TAGS[-1])], [0], f"cut {cut} bytes")
                self.assertEqual([e.step for e in events.Scalars(EPOCH_TAGS[0])], [0, 1])


class TrainedRunTest(unittest.TestCase):
    """`resnext train` writes the event log itself, as it trains, and keeps it equal to
    metrics.csv whatever happens to the process."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.run_dir = Path(self.tmp.name) / "run"

    def tearDown(self):
        self.tmp.cleanup()

    def step_losses(self, events):
        return [e.step for e in events.Scalars("step/loss")]

    def test_a_plain_run(self):
        train_tiny(self.run_dir)
        events = assert_events_match_csv(self, self.run_dir)
        self.assertEqual(sorted(events.Tags()["scalars"]), sorted(EPOCH_TAGS), "no step scalars unless asked")

    def test_a_resumed_run_with_step_scalars(self):
        # 640 images at batch 32: 20 steps an epoch; every 3rd of the 40 steps is logged once.
        train_tiny(self.run_dir, "--set", "tensorboard_steps=3", epochs=1)
        train_tiny(self.run_dir, "--resume")
        events = assert_events_match_csv(self, self.run_dir)
        self.assertEqual(self.step_losses(events), list(range(0, 40, 3)))
        self.assertEqual([e.step for e in events.Scalars("step/lr")], list(range(0, 40, 3)))

    def test_a_run_killed_at_random_moments_then_resumed(self):
        rng = random.Random(int(time.time()))
        # The config itself asks for step scalars: a resume takes no --set.
        config = json.loads((ROOT / "tests/fixtures/tiny.json").read_text())
        config["tensorboard_steps"] = 2
        config_path = Path(self.tmp.name) / "tiny_steps.json"
        config_path.write_text(json.dumps(config))
        args = [str(BIN), "train", str(config_path), "--out", str(self.run_dir), "--epochs", "4",
                "--train-limit", "960", "--test-limit", "100", "--device", "cpu"]
        for attempt in range(4):
            child = subprocess.Popen(args + (["--resume"] if attempt else []), cwd=ROOT, env=ENV,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3 + rng.random() * 2.5)
            child.kill()  # SIGKILL
            child.wait()
        resnext(*args[1:], "--resume")
        events = assert_events_match_csv(self, self.run_dir)
        # 30 steps an epoch, 120 in all: every 2nd logged, each once, in order.
        self.assertEqual(self.step_losses(events), list(range(0, 120, 2)))

    def test_a_run_with_a_validation_split_logs_the_test_columns_too(self):
        train_tiny(self.run_dir, "--set", "validation=200")
        events = assert_events_match_csv(self, self.run_dir)
        self.assertEqual(sorted(events.Tags()["scalars"]), sorted(EPOCH_TAGS + TEST_TAGS))

    def test_force_starts_the_log_again(self):
        train_tiny(self.run_dir)
        train_tiny(self.run_dir, "--force", epochs=1)
        events = assert_events_match_csv(self, self.run_dir)
        self.assertEqual([e.step for e in events.Scalars("loss")], [0])


if __name__ == "__main__":
    main()
