# `make run` and `make test` work on a fresh machine: they create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: install run serve simulator test test-fast lint format bench bench-quick clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## API on :8000 + Bolna simulator on :8100, SQLite under ./var, prints a demo token
run: $(STAMP)
	$(BIN)/python -m app dev

serve: $(STAMP)
	$(BIN)/python -m app serve

simulator: $(STAMP)
	$(BIN)/python -m app simulator

## The whole suite (PostgreSQL/Bugsink tests skip locally when absent, fail under CI=true)
test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -x -q -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app telemetry

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
