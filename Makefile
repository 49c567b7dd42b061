# procstore developer commands. Needs only python3 (3.11+) and make: `make demo`, `make test`.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

DEMO_CONTEXT ?= {"env": "staging"}

.DEFAULT_GOAL := help
.PHONY: help venv system-deps demo test lint bench report check-report docs diagrams clean

help:
	@echo "make venv   create $(VENV) and install procstore with its dev extras"
	@echo "make demo   run examples/deploy_workflow.json through the procstore CLI, stored in ./procstore.db"
	@echo "make test   run the test suite, then the quick benchmark smoke"
	@echo "make lint   ruff check, ruff format --check, mypy (strict) on procstore/ and tests/"
	@echo "make bench  run the full benchmark, and procstore beside its peers (perf/bench_peers.py)"
	@echo "make report run SPEC-007's acceptance criteria, write docs/validation.md (minutes)"
	@echo "make check-report  fail if docs/validation.md is stale: a test it counted is gone (or,"
	@echo "            with RESULTS=pytest.xml from make test, did not pass), or a script it ran changed"
	@echo "make docs   build the documentation site into site/ (mkdocs --strict)"
	@echo "make diagrams  regenerate diagrams/<example>.svg and .mmd for every examples/*.json"
	@echo "make system-deps  install Graphviz (dot) and the PostgreSQL server with apt-get if missing"
	@echo "make clean  remove caches (keeps $(VENV))"

venv: $(STAMP)

# Re-install whenever pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "procstore needs Python 3.11+, $(PY) is " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || { \
		echo "'$(PY) -m venv' failed: on Debian/Ubuntu install python3-venv first"; exit 1; }
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Debian/Ubuntu, as root: Graphviz's `dot` renders the SVG/PNG diagrams (procstore.diagrams);
# the PostgreSQL server binaries (initdb, pg_ctl, postgres) give `make test` its throwaway
# server (tools/pg_cluster.py). One `apt-get update`, and only when something is missing.
system-deps:
	@missing=""; \
	command -v dot >/dev/null || missing="$$missing graphviz"; \
	$(PY) tools/pg_cluster.py --find-bin >/dev/null || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing; \
	fi

# Persisted in ./procstore.db (the CLI's default store): running it again registers the same
# procedure (a no-op) and adds an execution; `procstore history ID` replays one.
demo: venv
	$(BIN)/procstore run examples/deploy_workflow.json --context '$(DEMO_CONTEXT)' --allow-module deploy_actions
	$(BIN)/procstore list

# PYTEST_ARGS: extra pytest options, e.g. --junitxml=pytest.xml for make check-report.
PYTEST_ARGS ?=

# pytest runs beside a throwaway PostgreSQL server (tools/pg_cluster.py: started on a free port
# of 127.0.0.1, its URL in PROCSTORE_TEST_POSTGRES, deleted afterwards), or against the server
# PROCSTORE_TEST_POSTGRES names if it is set. With CI=true no PostgreSQL test may skip.
# HIBERNATION_TESTS run a second time with every store hibernating its executions as soon as
# they wait (hibernate_after=0): what they check must hold whether an execution stays in memory
# or is rebuilt from the database between any two of its steps.
HIBERNATION_TESTS := tests/storage/test_durability.py tests/storage/test_crash_recovery.py \
	tests/storage/test_wait_durability.py tests/storage/test_persistent_stores.py \
	tests/storage/test_write_failures.py tests/storage/test_quarantine.py tests/clients

test: venv system-deps
	$(PY) tools/pg_cluster.py -- $(BIN)/pytest $(PYTEST_ARGS)
	$(PY) tools/pg_cluster.py -- $(BIN)/pytest -q --hibernate-after=0 $(HIBERNATION_TESTS)
	@if [ -f perf/bench_procstore.py ]; then \
		echo "$(BIN)/python perf/bench_procstore.py --quick"; \
		$(BIN)/python perf/bench_procstore.py --quick; \
	else \
		echo "perf/bench_procstore.py not found: no benchmark smoke"; \
	fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy procstore tests

# The peers of perf/bench_peers.py come with the bench extra (the dev extra includes it today;
# its own stamp keeps `make bench` working if that changes).
BENCH_STAMP := $(VENV)/.stamp-bench

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@touch $(BENCH_STAMP)

bench: venv system-deps $(BENCH_STAMP)
	$(BIN)/python perf/bench_procstore.py
	$(BIN)/python perf/bench_diagrams.py
	$(BIN)/python perf/bench_workers.py
	$(BIN)/python perf/bench_persistence.py
	$(BIN)/python perf/bench_hibernation.py
	$(BIN)/python perf/bench_peers.py

# SPEC-007 validation report (tests + full benchmark: 64-75 s idle, minutes on a busy machine);
# docs/validation.md is generated output: commit it, never edit it by hand.
report: venv
	$(BIN)/python perf/report.py --out docs/validation.md

# Regenerating the report takes minutes, so CI checks it instead: the record at its end (the
# tests each criterion counted, digests of perf/report.py and the benchmarks) against this
# checkout (perf/report_inputs.py). Tests added since, or a change to procstore, are not stale.
# RESULTS: the --junitxml file of a test run (make test PYTEST_ARGS=--junitxml=FILE): every
# test the report counted must have passed in it.
check-report: venv
	$(BIN)/python perf/report_inputs.py --check docs/validation.md $(if $(RESULTS),--results $(RESULTS))

# NO_MKDOCS_2_WARNING: silences mkdocs-material's end-of-life banner (not a build warning).
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# diagrams/<example>.svg and .mmd for every examples/*.json; unchanged ones are left alone.
diagrams: venv system-deps
	$(BIN)/python tools/build_diagrams.py --examples examples --out diagrams

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis site
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
