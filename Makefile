# Two commands: `make run` and `make test`. Everything else is set up on the way.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_WORKERS ?= 2

.PHONY: run test lint typecheck system-deps venv clean bench messages screenshots

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
