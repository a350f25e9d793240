# One venv, torch first (the CPU wheel on disk), then the project with its deepspeed and test extras,
# pinned and hash-checked by requirements.lock (pyproject.toml holds the compatible ranges).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup lock run smoke study test test-full dag clean services-up services-down

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e '.[deepspeed,test]'
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve requirements.lock from pyproject.toml's ranges (newest allowed versions, with hashes). uv needs the
# torch CPU wheel to resolve torch's own dependencies without CUDA: TORCH_WHEELS is a folder or index holding it
# (https://download.pytorch.org/whl/cpu where the network allows).
TORCH_WHEELS ?= /opt/wheels
lock: setup
	$(BIN)/python -m pip install -q uv
	echo 'torch==2.13.0+cpu' > $(VENV)/torch-override.txt
	$(BIN)/uv pip compile pyproject.toml --extra deepspeed --extra test --generate-hashes --python-version 3.11 \
		--override $(VENV)/torch-override.txt --find-links $(TORCH_WHEELS) --no-emit-package torch \
		--no-emit-package alignflow --no-header -o requirements.lock.new
	{ sed -n 1,2p requirements.lock; cat requirements.lock.new; } > requirements.lock && rm requirements.lock.new

run: setup
	$(BIN)/alignflow run --profile default

smoke: setup
	$(BIN)/alignflow run --profile smoke

study: setup
	$(BIN)/alignflow study studies/gram.yaml --profile study

# The fast default: every unit and component test, none that runs the pipeline through Prefect (about 2.5 minutes).
test: setup
	$(BIN)/python -m pytest -q -m "not integration and not slow"

# The whole suite, as CI runs it (.ci/run): adds the smoke DAG through Prefect/DVC/MLflow, the two-clone
# determinism check and the reliability drills (about 19 minutes on 2 cores).
test-full: setup
	$(BIN)/python -m pytest -q

# Team services on 127.0.0.1 (PostgreSQL, MLflow and Prefect servers, work pool + worker, DVC remote);
# `alignflow run` then tracks to them and pushes to the remote. docs/cluster.md: the multi-machine layout.
services-up: setup
	$(BIN)/alignflow services up

services-down: setup
	$(BIN)/alignflow services down

dag: setup
	$(BIN)/dvc dag

clean:
	rm -rf data/world data/prefs models reports checkpoints mlflow
