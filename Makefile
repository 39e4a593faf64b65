# smsvn: the Makefile bootstraps its own .venv, so a fresh machine needs only python3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint types unit demo bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,cli]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check smsvn tests
	$(BIN)/ruff format --check smsvn tests

types: $(STAMP)
	$(BIN)/mypy --strict smsvn

unit: $(STAMP)
	$(BIN)/pytest

test: lint types unit

demo: $(STAMP)
	$(BIN)/smsvn demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
