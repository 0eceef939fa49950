"""What the Python tests share: where the repository, the binary and the data are, and how to
run the binary."""
import os
import subprocess
import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("RESNEXT_BIN", ROOT / "target/release/resnext"))
# CIFAR10_DIR (make sets it), else the checkout's data/ (where `make data` downloads it).
DATA = Path(os.environ.get("CIFAR10_DIR", ROOT / "data/cifar-10-batches-bin"))
ENV = {**os.environ, "CIFAR10_DIR": str(DATA)}


def resnext(*args):
    """Runs `resnext args...` from the repository root; its stdout, or an AssertionError with its stderr."""
    result = subprocess.run([str(BIN), *map(str, args)], cwd=ROOT, capture_output=True, text=True, env=ENV)
    if result.returncode != 0:
        raise AssertionError(f"resnext {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stdout


def main():
    """Runs the calling file's tests; exits non-zero when one fails or none ran."""
    result = unittest.main(module="__main__", exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"python: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or result.testsRun == 0 else 0)
