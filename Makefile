# Two commands: `make run` and `make test`. Everything else is set up on the way.
# The daily loop: `make test-fast` (SQLite, no lab, ~30 s on 2 cores), `make fmt`,
# `make migration NAME="what changed" BRANCH=<domain>`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha256sum | cut -c1-12)
PYTEST_WORKERS ?= 2
# Compiled modules (and pytest's rewritten test modules) are kept under .venv, even where
# PYTHONDONTWRITEBYTECODE is set to keep the tree free of __pycache__: without them every
# test process compiles the whole product and its tests again (about 7 s of CPU per
# xdist worker, docs/development.md).
PYTEST_ENV := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(CURDIR)/$(VENV)/pycache

.PHONY: run test test-fast lint fmt imports typecheck migration system-deps venv clean bench lock audit messages screenshots

venv: $(STAMP)

# Every installed package comes from the lock, pinned and checked against its sha256
# (pip refuses anything unhashed); the project itself is installed on top, without
# resolving anything again and with the locked setuptools as its build backend.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

# Re-resolve pyproject.toml's pins (and what they pull in) into the lock, with hashes.
# Needs the network to PyPI; commit the result.
lock:
	test -x $(BIN)/pip-compile || $(MAKE) venv
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --extra dev --strip-extras \
		--no-emit-index-url --no-emit-find-links \
		-o $(LOCK) pyproject.toml

# Known vulnerabilities in the locked packages (PyPI's advisory database: needs the
# network, so it is not part of `make test`).
audit: venv
	$(BIN)/pip-audit --requirement $(LOCK) --require-hashes --disable-pip --progress-spinner off

# Debian packages the lab and the tests need; installed only when missing.
system-deps:
	@bash scripts/system-deps.sh

run: venv system-deps
	$(BIN)/masterline db upgrade
	$(BIN)/masterline demo run --stop-with-parent

lint: venv imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The allowed import directions ([tool.importlinter] in pyproject.toml).
imports: venv
	$(BIN)/lint-imports --no-cache

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The product, bench/ and tests/ ([tool.mypy] files in pyproject.toml).
typecheck: venv
	$(BIN)/mypy

test: venv system-deps lint typecheck
	$(PYTEST_ENV) $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

# The inner loop: SQLite only, no lab laptops, no slow or browser tests (markers in
# pyproject.toml). About 50 s of CPU, ~30 s of wall time on a quiet 2-core machine (it was
# 116 s of CPU; what was done, and how to measure on a shared machine: docs/development.md).
test-fast: venv
	$(PYTEST_ENV) MASTERLINE_TEST_BACKENDS=sqlite $(BIN)/pytest -n $(PYTEST_WORKERS) -m "not lab and not slow and not browser" -q

migration: venv
	@test -n "$(NAME)" -a -n "$(BRANCH)" || { echo 'usage: make migration NAME="what changed" BRANCH=<domain>'; exit 2; }
	$(BIN)/python scripts/new_migration.py --name "$(NAME)" --branch "$(BRANCH)"
	$(BIN)/ruff format -q core/migrations/versions

bench: venv system-deps
	$(BIN)/python -m bench

# The console's translations: extract every message, merge it into each catalogue (then
# translate the new entries in console/locale/*/LC_MESSAGES/messages.po), compile.
messages: venv
	$(BIN)/pybabel -q extract -F console/babel.cfg -k N_ --no-location \
		--project=masterline -o console/locale/messages.pot console
	$(BIN)/pybabel -q update -i console/locale/messages.pot -d console/locale \
		--no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel -q compile -d console/locale

# The screenshots in docs/ (bench board, wave dashboard), from a real browser.
screenshots: venv system-deps
	$(BIN)/python -m tests.console.screenshots docs/img

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
