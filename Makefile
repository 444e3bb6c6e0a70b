# The two commands: `make run` (one real DAG run on the demo set-up) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints.txt plugins/pyproject.toml | sha1sum | cut -c1-12)
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/plugins

.PHONY: run test airflow bench lint install clean

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e plugins
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## one real DAG run against the emulator and the embedded SQLite warehouse, then the report
	$(BIN)/python -m devstack.cli run

airflow: $(STAMP)  ## the Airflow UI on the demo set-up (login printed)
	$(BIN)/python -m devstack.cli ui

test: $(STAMP)  ## the whole test suite, the slow end-to-end tests included
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)  ## benchmarks under the real scheduler; figures go to bench/RESULTS.md
	$(BIN)/python -m bench.run

clean:
	rm -rf .airflow .demo
