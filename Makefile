# smsvn: the Makefile bootstraps its own .venv, so a fresh machine needs only python3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: test lint types unit demo bench soak fuzz clean

# Bytecode is cached (in __pycache__, ignored by git) even where the environment turns it off:
# the tests start a few hundred Python processes (CLI runs, campaign runners, workers), and each
# would compile smsvn from source again (about 0.1 s of CPU each), as would pytest its test
# modules in every worker.
unexport PYTHONDONTWRITEBYTECODE

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,cli]"
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test,cli,bench]"
	touch $(BENCH_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check smsvn tests benchmarks examples
	$(BIN)/ruff format --check smsvn tests benchmarks examples

types: $(STAMP)
	$(BIN)/mypy --strict smsvn examples

# The suites that do not measure time or rates run on three workers (on two cores: many of their
# tests wait on processes, sockets and timeouts, so a third worker fills the idle time, and
# work-stealing keeps the long crash fleets from leaving one worker to finish alone); then the
# ones that do (marked serial in tests/conftest.py) run alone, with nothing else on the machine.
unit: $(STAMP)
	$(BIN)/pytest -n 3 --dist worksteal -m "not serial"
	$(BIN)/pytest -m serial

test: lint types unit

demo: $(STAMP)
	$(BIN)/smsvn demo

# Throughput, CPU per request and memory against a bare aiohttp floor (5-6 minutes), then what
# a durable campaign costs (benchmarks/journal.py, 2-3 minutes; JOURNAL_ARGS="--postgres DSN"
# measures PostgreSQL too). BENCH_ARGS=--quick JOURNAL_ARGS=--quick for a smoke test.
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/journal.py $(JOURNAL_ARGS)

# The full-size soak: 100,000 recipients through each provider with random faults (~6 min).
soak: $(STAMP)
	SMSVN_SOAK_RECIPIENTS=100000 $(BIN)/pytest -m soak

# Deeper fuzzing of every parser than make test runs (20,000 examples each, ~7 min).
fuzz: $(STAMP)
	SMSVN_FUZZ_EXAMPLES=20000 $(BIN)/pytest tests/test_fuzz_parsers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
