# Two commands for a fresh machine (Python 3.11, pip; no GPU; no internet but the package registries):
#   make run   - create .venv, install requirements, build the demo artifacts if missing, serve the dashboard
#   make test  - create .venv, install requirements + test requirements, lint and type-check, run the whole test suite
#   make lint  - ruff check + ruff format --check + mypy pipeline (part of make test); make format - ruff format
# The project itself is installed editable (pyproject.toml) after its requirements, so no sys.path edits are needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test lint format demo serve install install-dev bench clean-artifacts

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.runtime-installed

install: $(VENV)/.runtime-installed
install-dev: $(VENV)/.dev-installed

# Builds only what is missing: a second run finds every model complete and returns in seconds.
demo: install
	$(PY) -m pipeline demo

serve: install
	$(PY) -m streamlit run dashboard/app.py --server.port $(PORT)

run: demo serve

# Lint and types first, so CI fails on them before the (long) test run.
lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy pipeline

# Rewrites files: run before committing when `make lint` reports formatting.
format: install-dev
	$(PY) -m ruff format .

test: lint
	$(PY) -m pytest

bench: install-dev
	$(PY) -m bench.run_all

clean-artifacts:
	rm -rf artifacts/demo-histology artifacts/demo-lesions .cache/demo-data
