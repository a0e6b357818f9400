# The two commands: `make demo` (install + quickstart) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-slow install clean-runs lint

$(BIN)/propensity: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned to the CPU build (a bare `torch` pulls a multi-GB CUDA build)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(BIN)/propensity

demo: install
	$(BIN)/propensity run configs/quickstart.yaml

test: install
	$(BIN)/python -m pytest -q -m "not slow" tests

# Minutes-long end-to-end runs on the local Slurm cluster (tiny experiment on Slurm vs local, faults, requeue).
test-slow: install
	$(BIN)/python -m pytest -q -m slow tests

lint: install
	$(BIN)/python -m ruff check . || true

clean-runs:
	rm -rf runs
