# Two commands for a fresh machine (Python 3.11, pip; no GPU; no internet but the package registries):
#   make run   - create .venv, install requirements, build the demo artifacts if missing, serve the dashboard
#   make test  - create .venv, install requirements + test requirements, run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test demo serve install install-dev bench clean-artifacts

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

install: $(VENV)/.runtime-installed
install-dev: $(VENV)/.dev-installed

# Builds only what is missing: a second run finds every model complete and returns in seconds.
demo: install
	$(PY) -m pipeline demo

serve: install
	$(PY) -m streamlit run dashboard/app.py --server.port $(PORT)

run: demo serve

test: install-dev
	$(PY) -m pytest

bench: install-dev
	$(PY) -m bench.run_all

clean-artifacts:
	rm -rf artifacts/demo-histology artifacts/demo-lesions .cache/demo-data
