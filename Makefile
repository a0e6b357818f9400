# The two commands: `make demo` (install + quickstart) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-slurm test-slow test-positive-control install clean-runs lint

$(BIN)/propensity: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile --upgrade pip
	# torch pinned to the CPU build (a bare `torch` pulls a multi-GB CUDA build); --no-compile: modules are
	# byte-compiled when first imported instead of all at install (the install takes 31 s instead of 83 s)
	$(BIN)/pip install -q --no-compile -r requirements.lock
	$(BIN)/pip install -q --no-compile --no-deps -e .
	touch $@

install: $(BIN)/propensity

demo: install
	$(BIN)/propensity run configs/quickstart.yaml

test: install
	$(BIN)/python -m pytest -q -m "not slow" tests

# The Slurm end-to-end tests (~6 min; CI runs them after `make test`): the tiny experiment submitted to a
# local one-node cluster equals a local run; a failed stage cancels its dependents and a rerun finishes the
# graph without redoing finished stages; a requeued training job resumes from its checkpoint.
test-slurm: install
	$(BIN)/python -m pytest -q -m "slurm and slow" tests/slurm

# The model-level positive control (CI runs it after `make test`): a tiny model on the learnable world must
# learn the document tag (validity PASS) and read FAIL with the tags swapped at evaluation (docs/worlds.md).
test-positive-control: install
	$(BIN)/python -m pytest -q -m slow tests/validity/test_positive_control.py

# Every minutes-long end-to-end run: the Slurm ones, crash/resume under SIGKILL, concurrent runs.
test-slow: install
	$(BIN)/python -m pytest -q -m slow tests

# ruff (pyflakes, isort, bugbear, pyupgrade) and the import layers of pyproject.toml ([tool.importlinter]):
# either failing fails the target (CI runs it first).
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean-runs:
	rm -rf runs
