# ftctl: two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEV_STAMP := $(VENV)/.stamp-dev
TRAIN_STAMP := $(VENV)/.stamp-train
export PYTHONDONTWRITEBYTECODE :=
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-train demo demo-cml test lint schemas schemas-check bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[dev]'
	touch $@

# The job side (runners: train, evaluate, export): torch first, pinned, so no other torch build is pulled in.
$(TRAIN_STAMP): pyproject.toml | $(DEV_STAMP)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,train,mlflow]'
	touch $@

install: $(DEV_STAMP)

install-train: $(TRAIN_STAMP)

# The demo project: build the tiny model offline, then apply specs/demo and wait for its jobs:
# train a LoRA adapter, evaluate base vs adapter into MLflow (.app/mlflow.db), export to the registry.
DEMO_MODEL := specs/demo/models/tiny-llama
demo: install-train
	$(BIN)/python runners/build_tiny_model.py --data specs/demo/data/tickets.csv --out $(DEMO_MODEL)
	$(BIN)/ftctl apply --offline --auto-approve --create-store --wait specs/demo
	$(BIN)/ftctl status --offline specs/demo
	@echo "Training and evaluation runs (base vs adapter), and the registered model, in MLflow:"
	@echo "  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.app/mlflow.db   (then open http://127.0.0.1:5000)"

# Optional: the same demo on the CML backend, without CML. A fake CML API (tests/fakes/cml_server.py)
# runs in-process and each job run runs the real runner in this folder (tests/fakes/demo_cml.py);
# store, job folders and MLflow under .app/cml-demo/.
demo-cml: install-train
	$(BIN)/python runners/build_tiny_model.py --data specs/demo/data/tickets.csv --out $(DEMO_MODEL)
	$(BIN)/python -m tests.fakes.demo_cml

lint: install
	$(BIN)/ruff check reconciler runners tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/ftctl schema --check

# The editor test (tests/e2e/test_language_server.py) drives the real YAML language server, the one
# VS Code's YAML extension and Neovim run: installed from npm into .tools/ (ignored), pinned.
YAML_LS_VERSION := 1.25.0
YAML_LS_STAMP := .tools/.stamp-yaml-language-server-$(YAML_LS_VERSION)
$(YAML_LS_STAMP):
	npm install --silent --no-audit --no-fund --prefix .tools yaml-language-server@$(YAML_LS_VERSION)
	touch $@

# The tests run real jobs on a tiny model, so they need the job side installed too.
test: lint $(TRAIN_STAMP) $(YAML_LS_STAMP)
	$(BIN)/python -m pytest

# Regenerates schemas/: manifest schemas from the pydantic models, config-body schemas from the
# pinned libraries themselves (needs the job side installed).
schemas: $(TRAIN_STAMP)
	$(BIN)/ftctl schema --with-libraries

bench: install  # DEVICE=cuda: the training throughput on the GPU (a ~0.5B random Llama, bf16 LoRA); QUANT=4bit: QLoRA
	$(BIN)/python tests/bench/bench.py --device $(or $(DEVICE),cpu) --quant $(or $(QUANT),none)

clean:
	rm -rf $(VENV) .app .bench .tools $(DEMO_MODEL)
