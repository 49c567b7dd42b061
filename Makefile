# procstore developer commands. Needs only python3 (3.11+) and make: `make demo`, `make test`.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

DEMO_CONTEXT ?= {"env": "staging"}

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint bench docs clean

help:
	@echo "make venv   create $(VENV) and install procstore with its dev extras"
	@echo "make demo   run examples/deploy_workflow.json through the procstore CLI"
	@echo "make test   run the test suite, then the quick benchmark smoke"
	@echo "make lint   ruff check, ruff format --check, mypy (strict) on procstore/"
	@echo "make bench  run the full benchmark"
	@echo "make docs   build the documentation site into site/ (mkdocs --strict)"
	@echo "make clean  remove caches (keeps $(VENV))"

venv: $(STAMP)

# Re-install whenever pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "procstore needs Python 3.11+, $(PY) is " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || { \
		echo "'$(PY) -m venv' failed: on Debian/Ubuntu install python3-venv first"; exit 1; }
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: venv
	$(BIN)/procstore run examples/deploy_workflow.json --context '$(DEMO_CONTEXT)' --allow-module deploy_actions

test: venv
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

bench: venv
	$(BIN)/python perf/bench_procstore.py

# NO_MKDOCS_2_WARNING: silences mkdocs-material's end-of-life banner (not a build warning).
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis site
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
