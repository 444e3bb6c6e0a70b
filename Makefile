SHELL := /bin/bash
# The two commands: `make run` (one real DAG run on the demo set-up) and `make test` (the whole suite).
# `make check` is the inner loop: lint and every test that needs no server, browser or scheduler.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP_PIN := pip==25.3
hash = $(shell cat $(1) | sha1sum | cut -c1-12)
# `make run` installs only requirements.txt: wheels, no compiler (wheels-check proves it).
RUN_STAMP := $(VENV)/.run-$(call hash,requirements.txt constraints.txt plugins/pyproject.toml)
# The tests add their tools (requirements-dev.txt) and the optional warehouse drivers (requirements-mysql.txt).
DEV_STAMP := $(VENV)/.dev-$(call hash,requirements-dev.txt constraints.txt)
MYSQL_STAMP := $(VENV)/.mysql-$(call hash,requirements-mysql.txt constraints.txt)
# Parallel pytest workers for `make test` (pytest-xdist); tests/conftest.py groups what must share one. Most
# of an end-to-end test is waiting (the emulator's rate limit, task start-up), so three suit two cores.
TEST_WORKERS ?= 3
# `make check`'s tests mostly wait on the emulator's rate limits: three workers suit two cores.
CHECK_WORKERS ?= 3
FAST := not needs_services
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/plugins

.PHONY: run test check airflow bench lint install system-packages wheels-check clean

$(RUN_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "$(PIP_PIN)"
	$(BIN)/pip install --quiet --only-binary=:all: -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e plugins
	rm -f $(VENV)/.run-*
	touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet --only-binary=:all: -r requirements-dev.txt -c constraints.txt
	rm -f $(VENV)/.dev-*
	touch $@

$(MYSQL_STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -r requirements-mysql.txt -c constraints.txt
	rm -f $(VENV)/.mysql-*
	touch $@

install: $(RUN_STAMP)

run: $(RUN_STAMP)  ## one real DAG run against the emulator and the embedded SQLite warehouse, then the report
	$(BIN)/python -m devstack.cli run

airflow: $(RUN_STAMP)  ## the Airflow UI on the demo set-up (login printed)
	$(BIN)/python -m devstack.cli ui

system-packages:  ## the Debian packages the tests need, installed only where missing (as root or with sudo)
	PYTHON=$(PYTHON) bash .ci/system-packages

wheels-check: $(RUN_STAMP)  ## fails if `make run`'s install would build anything from source (fresh resolve, no cache)
	@$(BIN)/pip install --dry-run --quiet --ignore-installed --no-cache-dir --only-binary=:all: \
		-r requirements.txt -c constraints.txt 2>&1 | grep -v "^WARNING: Location" ; \
	status=$${PIPESTATUS[0]}; if [ $$status -ne 0 ]; then \
		echo "error: 'make run' would build a package from source (no wheel for this platform): see above" >&2; \
		exit 1; fi; echo "wheels-check: every package 'make run' installs is a wheel"

check: $(DEV_STAMP)  ## lint, types + the tests that need no server, browser or scheduler (the inner loop)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "$(FAST)" -n $(CHECK_WORKERS) --no-loadscope-reorder --durations=10

test: system-packages wheels-check $(DEV_STAMP) $(MYSQL_STAMP)  ## the whole test suite, end-to-end and browser tests included
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder --durations=25 --junitxml=test-artifacts/junit.xml

lint: $(DEV_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(RUN_STAMP) $(DEV_STAMP)  ## benchmarks under the real scheduler; figures go to bench/RESULTS.md
	$(BIN)/python -m bench.run

clean:
	rm -rf .airflow .demo
