# procstore developer commands. Needs only python3 (3.11+) and make: `make demo`, `make test`.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

DEMO_CONTEXT ?= {"env": "staging"}

.DEFAULT_GOAL := help
.PHONY: help venv system-deps demo test lint bench report docs diagrams clean

help:
	@echo "make venv   create $(VENV) and install procstore with its dev extras"
	@echo "make demo   run examples/deploy_workflow.json through the procstore CLI, stored in ./procstore.db"
	@echo "make test   run the test suite, then the quick benchmark smoke"
	@echo "make lint   ruff check, ruff format --check, mypy (strict) on procstore/"
	@echo "make bench  run the full benchmark"
	@echo "make report run SPEC-007's acceptance criteria, write docs/validation.md"
	@echo "make docs   build the documentation site into site/ (mkdocs --strict)"
	@echo "make diagrams  regenerate diagrams/<example>.svg and .mmd for every examples/*.json"
	@echo "make system-deps  install Graphviz (the dot program) with apt-get if it is missing"
	@echo "make clean  remove caches (keeps $(VENV))"

venv: $(STAMP)

# Re-install whenever pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "procstore needs Python 3.11+, $(PY) is " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || { \
		echo "'$(PY) -m venv' failed: on Debian/Ubuntu install python3-venv first"; exit 1; }
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Graphviz's `dot` renders the SVG/PNG diagrams (procstore.diagrams); Debian/Ubuntu, as root.
system-deps:
	@command -v dot >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y graphviz; }

# Persisted in ./procstore.db (the CLI's default store): running it again registers the same
# procedure (a no-op) and adds an execution; `procstore history ID` replays one.
demo: venv
	$(BIN)/procstore run examples/deploy_workflow.json --context '$(DEMO_CONTEXT)' --allow-module deploy_actions
	$(BIN)/procstore list

test: venv system-deps
	$(BIN)/pytest
	@if [ -f perf/bench_procstore.py ]; then \
		echo "$(BIN)/python perf/bench_procstore.py --quick"; \
		$(BIN)/python perf/bench_procstore.py --quick; \
	else \
		echo "perf/bench_procstore.py not found: no benchmark smoke"; \
	fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy procstore

bench: venv system-deps
	$(BIN)/python perf/bench_procstore.py
	$(BIN)/python perf/bench_diagrams.py

# SPEC-007 validation report (tests + full benchmark, about 2-3 minutes); docs/validation.md is
# generated output: commit it, never edit it by hand.
report: venv
	$(BIN)/python perf/report.py --out docs/validation.md

# NO_MKDOCS_2_WARNING: silences mkdocs-material's end-of-life banner (not a build warning).
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# diagrams/<example>.svg and .mmd for every examples/*.json; unchanged ones are left alone.
diagrams: venv system-deps
	$(BIN)/python -m procstore.diagrams.build --examples examples --out diagrams

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis site
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
