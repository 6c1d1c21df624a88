# The two commands of README.md: `make run` (the default simulation) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup run test lint bench

setup:
	bash scripts/setup.sh

run: setup
	$(PY) -m simulations.run $(ARGS)

test: setup
	$(PY) -m pytest -n $$(($$(nproc) + 1)) --dist worksteal --durations=15 $(ARGS)  # a worker per core and one more: engine tests spend much of their time waiting; the 15 slowest listed (the suite must stay under 8 minutes on 2 cores)

lint: setup
	$(VENV)/bin/ruff check fedhyper strategies clients simulations tests benchmarks scripts
	$(VENV)/bin/ruff format --check fedhyper strategies clients simulations tests benchmarks scripts

bench: setup
	$(PY) -m benchmarks.round_overhead $(ARGS)
