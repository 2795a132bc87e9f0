# Two commands: `make run` and `make test`. Everything else is set up on the way.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_WORKERS ?= 2

.PHONY: run test lint typecheck system-deps venv clean bench

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

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

test: venv system-deps lint typecheck
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

bench: venv system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
