# resnext-rs: every target installs what it needs first (a project venv with torch 2.11.0
# from PyPI, whose libtorch tch links against), so a fresh machine needs nothing else.
SHELL := /bin/bash
TORCH_VERSION := 2.11.0
# Which build of torch 2.11.0: `pypi` (CUDA 13.0: NVIDIA driver 580 or newer, Turing to
# Blackwell GPUs), `cu128` (CUDA 12.8: driver 525+, Turing to Blackwell), `cu126` (CUDA 12.6:
# driver 525+, Maxwell to Hopper, the only one for Pascal and Volta such as the blog's GTX
# 1080 Ti) or `cpu` (no CUDA, a much smaller download). E.g. `make setup TORCH_WHEEL=cu126`.
TORCH_WHEEL ?= pypi
# PyTorch's own index names each build by its local version (2.11.0+cu126), which pip then
# installs over another build; `pypi` cannot replace one (use cu130 for the same build).
ifeq ($(TORCH_WHEEL),pypi)
  TORCH := torch==$(TORCH_VERSION)
else ifneq ($(filter cu126 cu128 cu130 cpu,$(TORCH_WHEEL)),)
  TORCH := torch==$(TORCH_VERSION)+$(TORCH_WHEEL) --extra-index-url https://download.pytorch.org/whl/$(TORCH_WHEEL)
else
  $(error TORCH_WHEEL=$(TORCH_WHEEL): expected pypi, cu126, cu128, cu130 or cpu)
endif
# TensorBoard, to watch runs (`.venv/bin/tensorboard --logdir results`) and to read the event
# logs in the tests.
TENSORBOARD_VERSION := 2.21.0
VENV := .venv
PYTHON := $(VENV)/bin/python
# Named after the versions and the wheel, so that a venv made before one changed is redone.
STAMP := $(VENV)/.torch-$(TORCH_VERSION)-$(TORCH_WHEEL)-tensorboard-$(TENSORBOARD_VERSION)
BIN := target/release/resnext
# Where torch-sys and build.rs find the venv's libtorch, so that plain `cargo build`, `cargo
# test` and `cargo run` work in any shell after `make setup` (not only through make).
CARGO_CONFIG := .cargo/config.toml
SHARED_CIFAR := ../shared/cifar10/cifar-10-batches-bin

# Scripts run by make (gpu-check, bench-cpu) find the venv's python3 first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# CIFAR-10 for the tests and the demo: CIFAR10_DIR when set, else data/cifar-10-batches-bin,
# else the copy kept beside the checkout on this project's own machines (../shared), else
# `make data` downloads the official archive into data/ (the binary's default folder).
ifeq ($(origin CIFAR10_DIR), undefined)
  ifeq ($(wildcard data/cifar-10-batches-bin/test_batch.bin),)
    ifneq ($(wildcard $(SHARED_CIFAR)/test_batch.bin),)
      export CIFAR10_DIR := $(abspath $(SHARED_CIFAR))
    endif
  endif
endif

.PHONY: setup build lint test plain-cargo-test demo data study run-all bench bundle slurm-test gpu-check clean

setup: $(STAMP) $(CARGO_CONFIG) build

# The venv is reused when it already has this torch version and build. Switching the build
# reinstalls torch; cargo then rebuilds against it (torch-sys reruns when libtorch changes).
$(STAMP):
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet $(TORCH) numpy tensorboard==$(TENSORBOARD_VERSION)
	$(PYTHON) -c "import torch; assert torch.__version__.split('+')[0] == '$(TORCH_VERSION)', torch.__version__"
	rm -f $(VENV)/.torch-*
	touch $(STAMP)

# The venv's torch package folder (torch-sys takes include/ and lib/ from it) and its C++ ABI,
# relative to the checkout.
$(CARGO_CONFIG): $(STAMP)
	mkdir -p $(dir $@)
	torch=$$($(PYTHON) -c 'import os, torch; print(os.path.relpath(os.path.dirname(torch.__file__)))') && \
	abi=$$($(PYTHON) -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))') && \
	printf '%s\n' '# Written by `make setup`: where the venv'"'"'s libtorch is, for torch-sys and build.rs.' \
	  '[env]' "LIBTORCH = { value = \"$$torch\", relative = true }" "LIBTORCH_CXX11_ABI = \"$$abi\"" > $@

build: $(STAMP) $(CARGO_CONFIG)
	cargo build --release

# rustfmt (rustfmt.toml) and clippy with every warning an error, as CI runs them.
lint: $(STAMP) $(CARGO_CONFIG)
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings

# Everything: the Rust tests (gpu-check --device cpu --quick among them, in tests/e2e/scripts.rs),
# the Python ones, plain cargo from a shell without the venv, and the SLURM job array on a
# one-node cluster.
test: setup data
	cargo test --release
	$(PYTHON) -W ignore tests/python/test_export.py
	$(PYTHON) -W ignore tests/python/test_tensorboard.py
	$(PYTHON) -W ignore tests/python/test_peer.py
	$(MAKE) plain-cargo-test
	$(MAKE) slurm-test

# What a user types after `make setup`, in a shell that has cargo but neither the venv nor any
# libtorch variable: `cargo run -- plot` on a results folder (tests/fixtures/results) works
# without rebuilding anything.
PLAIN_SHELL := env -i HOME="$(HOME)" PATH="$(dir $(shell command -v cargo)):/usr/bin:/bin"
plain-cargo-test: build
	rm -rf target/plain-cargo-plots
	$(PLAIN_SHELL) cargo run --release -- plot tests/fixtures/results --out target/plain-cargo-plots 2>&1 | tee target/plain-cargo.log
	@! grep -q "Compiling" target/plain-cargo.log || { echo "plain cargo rebuilt the project: .cargo/config.toml and make disagree"; exit 1; }
	test -s target/plain-cargo-plots/demo_vs_demo_fast.png

# Real data: CIFAR10_DIR when set (or the shared copy), else the official archive, fetched once.
data: build
	@if [ -z "$$CIFAR10_DIR" ] && [ ! -f data/cifar-10-batches-bin/test_batch.bin ]; then $(BIN) data download --to data; fi

# The demo study: the blog's recipe and a modern one on the same small network, in under 10
# minutes on 2 cores (both train on the first 20,000 training images; DEMO_ARGS= for all
# 50,000), then their report with its figures in plots/demo/ and the modern run's confusion
# matrix. One run each, so the report gives the difference, not a verdict
# (scripts/run-all.sh --study demo --seeds N trains several seeds of each).
DEMO_ARGS ?= --train-limit 20000
demo: data
	$(BIN) train demo --force $(DEMO_ARGS)
	$(BIN) train demo_fast --force $(DEMO_ARGS)
	$(BIN) eval results/demo
	$(BIN) eval results/demo_fast
	$(BIN) report results/demo results/demo_fast --study demo --out plots/demo/report.md
	cp results/demo_fast/confusion_matrix.png plots/demo/

# The blog's study at laptop scale (experiments/blog-small): its five recipes, three seeds each,
# fp32 on the CPU, two runs at once (each on a core of its own: these small networks use one
# core better than two), then its report and figures in results/blog-small/. About 76 minutes on
# 2 cores. A rerun goes on where it stopped (finished runs stay as they are,
# the repository's own among them).
STUDY_ARGS ?=
study: data
	./scripts/run-all.sh --device cpu --per-gpu 2 --study blog-small --seeds 3 $(STUDY_ARGS)

# The five blog runs on every GPU, and the report of the whole study with its figures
# (results/blog/report.md); RUN_ALL_ARGS adds options, e.g. RUN_ALL_ARGS="--seeds 3".
RUN_ALL_ARGS ?=
run-all: data
	./scripts/run-all.sh $(RUN_ALL_ARGS)

# A one-node SLURM cluster on localhost (installs slurm-wlm and munge when missing) running
# scripts/slurm/run-all.sbatch with tiny CPU runs; see scripts/slurm/test.sh --help.
slurm-test: build
	./scripts/slurm/test.sh

# The first command on a GPU machine (scripts/gpu-check.sh --help); GPU_CHECK_ARGS="--device cpu --quick"
# runs every step at tiny sizes on a CPU.
gpu-check: build
	./scripts/gpu-check.sh $(GPU_CHECK_ARGS)

# dist/resnext: the binary with a launcher that finds its libtorch on a machine without Rust,
# the scripts, experiments and the PyTorch peer (scripts/bundle.sh --help). BUNDLE_TRAIN_BATCHES=1
# also packs the test batch and the first training batch, xz-compressed, as its default data.
BUNDLE_OUT ?= dist/resnext
BUNDLE_TRAIN_BATCHES ?= 0
BUNDLE_XZ_LEVEL ?= 9
bundle: build $(if $(filter 0,$(BUNDLE_TRAIN_BATCHES)),,data)
	./scripts/bundle.sh --out $(BUNDLE_OUT) --train-batches $(BUNDLE_TRAIN_BATCHES) --level $(BUNDLE_XZ_LEVEL)

bench: setup
	$(BIN) bench my_resnext --mode train
	$(BIN) bench my_resnext --mode eval
	$(BIN) bench my_resnext --mode data

clean:
	cargo clean
	rm -rf $(VENV) $(CARGO_CONFIG)
