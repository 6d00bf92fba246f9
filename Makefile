# torch-template: `make demo` and `make test` each set up everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SCRATCH := $(CURDIR)/.scratch
DEMO_DIR := $(SCRATCH)/demo
PYTEST_WORKERS ?= 2
# The GPU check's interpreter: the venv, unless GPU_CHECK_PYTHON names one whose environment
# has the packages already (a GPU machine without network); then nothing is installed.
GPU_CHECK_PYTHON ?=
# cookiecutter leaves rendered hook scripts in $TMPDIR: keep them inside the checkout.
export TMPDIR := $(SCRATCH)/tmp

.PHONY: install demo test test-pythons test-fast gpu-check lint clean

install: $(INSTALLED)

$(INSTALLED): requirements-dev.txt
	@mkdir -p $(TMPDIR)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

demo: install  ## render the default project, train it on digits, export ONNX
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	$(BIN)/cookiecutter . --no-input --output-dir $(DEMO_DIR) init_git=no
	cd $(DEMO_DIR)/image_classifier && PYTHONPATH=src $(abspath $(BIN))/python -m image_classifier.train \
		--name demo --export-onnx --no-progress
	@echo
	@echo "Demo project:   $(DEMO_DIR)/image_classifier"
	@echo "Run folder:     $(DEMO_DIR)/image_classifier/runs/demo (config, train.log, metrics.jsonl, last.pt, best.pt, model.onnx)"
	@echo "TensorBoard:    $(BIN)/tensorboard --logdir $(DEMO_DIR)/image_classifier/runs"

test: install  ## the whole suite (PYTEST_ARGS=--shard NAME: one shard of it, see tests/options.py)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=30 $(PYTEST_ARGS)

test-pythons: install  ## every python_version answer: installed with its interpreter, tested, trained, exported
	$(BIN)/python -m pytest --pythons -n $(PYTEST_WORKERS)

test-fast: install  ## the quick subset: every combination rendered, linted and trained; four own suites
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"

gpu-check: $(if $(GPU_CHECK_PYTHON),,install)  ## on a CUDA GPU: train all 64 combinations, pytest -m gpu, samples/s table
	@mkdir -p $(TMPDIR)
	$(or $(GPU_CHECK_PYTHON),$(BIN)/python) benchmarks/gpu_check.py

lint: install
	$(BIN)/ruff check hooks tests
	$(BIN)/ruff format --check hooks tests

clean:
	rm -rf $(SCRATCH)
