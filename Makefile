# One venv, torch first (the CPU wheel on disk), then the project pinned by requirements.lock.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run smoke study test test-fast dag clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c requirements.lock -e .
	touch $(STAMP)

run: setup
	$(BIN)/alignflow run --profile default

smoke: setup
	$(BIN)/alignflow run --profile smoke

study: setup
	$(BIN)/alignflow study studies/gram.yaml --profile study

# The whole suite: what CI runs (.ci/run), under 15 minutes on 2 cores.
test: setup
	$(BIN)/python -m pytest -q

# The quick loop while developing: everything but the tests that run the pipeline or train for minutes.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not integration"

dag: setup
	$(BIN)/dvc dag

clean:
	rm -rf data/world data/prefs models reports checkpoints mlflow
