# resnext-rs: every target installs what it needs first (a project venv with torch 2.11.0
# from PyPI, whose libtorch tch links against), so a fresh machine needs nothing else.
SHELL := /bin/bash
TORCH_VERSION := 2.11.0
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.torch-$(TORCH_VERSION)
BIN := target/release/resnext
SHARED_CIFAR := ../shared/cifar10/cifar-10-batches-bin

export LIBTORCH_USE_PYTORCH := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Tests and the demo use the shared copy of CIFAR-10 when it is there and CIFAR10_DIR is unset.
ifeq ($(origin CIFAR10_DIR), undefined)
  ifneq ($(wildcard $(SHARED_CIFAR)/test_batch.bin),)
    export CIFAR10_DIR := $(abspath $(SHARED_CIFAR))
  endif
endif

.PHONY: setup build lint test demo data run-all bench slurm-test gpu-check clean

setup: $(STAMP) build

# The venv is reused when it already has this torch version.
$(STAMP):
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet torch==$(TORCH_VERSION) numpy
	$(PYTHON) -c "import torch; assert torch.__version__.split('+')[0] == '$(TORCH_VERSION)', torch.__version__"
	touch $(STAMP)

build: $(STAMP)
	cargo build --release

# rustfmt (rustfmt.toml) and clippy with every warning an error, as CI runs them.
lint: $(STAMP)
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings

test: setup
	cargo test --release
	$(PYTHON) -W ignore tests/python/test_export.py

# Real data: CIFAR10_DIR when set (or the shared copy), else the official archive, fetched once.
data: setup
	@if [ -z "$$CIFAR10_DIR" ] && [ ! -f data/cifar-10-batches-bin/test_batch.bin ]; then $(BIN) data download --to data; fi

demo: data
	$(BIN) train demo --force
	$(BIN) eval results/demo
	$(BIN) plot results/demo --out plots/demo
	cp results/demo/confusion_matrix.png plots/demo/

run-all: data
	./scripts/run-all.sh

# A one-node SLURM cluster on localhost (installs slurm-wlm and munge when missing) running
# scripts/slurm/run-all.sbatch with tiny CPU runs; see scripts/slurm/test.sh --help.
slurm-test: build
	./scripts/slurm/test.sh

# The first command on a GPU machine (scripts/gpu-check.sh --help); GPU_CHECK_ARGS="--device cpu --quick"
# runs every step at tiny sizes on a CPU.
gpu-check: build
	./scripts/gpu-check.sh $(GPU_CHECK_ARGS)

bench: setup
	$(BIN) bench my_resnext --mode train
	$(BIN) bench my_resnext --mode eval
	$(BIN) bench my_resnext --mode data

clean:
	cargo clean
	rm -rf $(VENV)
