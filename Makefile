# Two commands: `make run` and `make test`. Everything else is set up on the way.
# The daily loop: `make test-fast` (SQLite, no lab, well under a minute), `make fmt`,
# `make migration NAME="what changed" BRANCH=<domain>`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_WORKERS ?= 2

.PHONY: run test test-fast lint fmt imports typecheck migration system-deps venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# Debian packages the lab and the tests need; installed only when missing.
system-deps:
	@bash scripts/system-deps.sh

run: venv system-deps
	$(BIN)/masterline db upgrade
	$(BIN)/masterline demo run

lint: venv imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The allowed import directions ([tool.importlinter] in pyproject.toml).
imports: venv
	$(BIN)/lint-imports --no-cache

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: venv
	$(BIN)/mypy

test: venv system-deps lint typecheck
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

# The inner loop: SQLite only, no lab laptops, no slow tests (markers in pyproject.toml).
test-fast: venv
	MASTERLINE_TEST_BACKENDS=sqlite $(BIN)/pytest -n $(PYTEST_WORKERS) -m "not lab and not slow" -q

migration: venv
	@test -n "$(NAME)" -a -n "$(BRANCH)" || { echo 'usage: make migration NAME="what changed" BRANCH=<domain>'; exit 2; }
	$(BIN)/python scripts/new_migration.py --name "$(NAME)" --branch "$(BRANCH)"
	$(BIN)/ruff format -q core/migrations/versions

bench: venv system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
