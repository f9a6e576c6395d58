# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One file of each Debian text package the demo and benchmark tenants are built from
TEXTS := /usr/share/wordnet/data.noun /usr/share/games/fortunes/people /usr/bin/bible /usr/share/dictd/foldoc.dict.dz /usr/share/dictd/gcide.dict.dz /usr/share/dictd/vera.dict.dz
TEXT_PACKAGES := wordnet-base fortunes bible-kjv bible-kjv-text dict-foldoc dict-gcide dict-vera
BENCH_STAMP := $(VENV)/.installed-bench
CHROMEDRIVER := /usr/bin/chromedriver
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test test-slow test-gpu bench bench-quick bench-latency bench-fleet postgresql clean

setup: $(STAMP) $(TEXTS) $(CHROMEDRIVER) postgresql

# Real text, read offline: WordNet 3.0 glosses, fortunes by category, the King James Bible by book
# and the FOLDOC computing dictionary by subject (with Home Assistant intents from PyPI, six sources
# the demo and the meta-learning benchmark build tenants from).
$(TEXTS):
	@echo "installing Debian packages $(TEXT_PACKAGES) (text sources of the demo tenants)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(TEXT_PACKAGES) >/dev/null

# Debian's Chromium and its driver: the review page's end-to-end test drives a real browser
# (selenium; a browser download at run time does not work on CI).
$(CHROMEDRIVER):
	@echo "installing Debian packages chromium and chromium-driver (browser test of the review page)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null

# Debian's PostgreSQL: the tests start a throwaway server of it (initdb in a temporary folder, a free
# local port, stopped at the end) to run MLflow's and Prefect's stores on it (tests/postgres.py).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian package postgresql (the PostgreSQL tests start a server of it)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (first time: several minutes)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The optional `bench` extra (the setfit package, SetFit's anchor in the benchmark): its own stamp,
# so `make test` and `make demo` never install it.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	@echo "installing the benchmark extra (setfit)"
	@$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

demo: setup
	$(BIN)/tailor --workspace demo-workspace demo

test: setup
	$(BIN)/python -m pytest -q --durations=15

test-slow: setup $(BENCH_STAMP)
	$(BIN)/python -m pytest -q -m slow

test-gpu: setup
	$(BIN)/python -m pytest -q -m gpu

bench: setup $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.meta_learning

bench-quick: setup $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.meta_learning --quick --out benchmarks/results/quick

# Cold-command latency against issue 20's targets (40 tenants, then one new tenant at 1,000):
# benchmarks/results/latency.md; about 30 minutes. `--skip-fleet` in ARGS for the quick rows alone.
bench-latency: setup
	$(BIN)/python -m benchmarks.latency $(ARGS)

# Fleet operations at scale (benchmarks/results/fleet.md): the slope at 100, 1,000 and TENANTS tenants on
# sqlite and PostgreSQL side by side; several hours at 5,000 on 2 cores (ARGS="--sizes 100,1000" is quicker).
bench-fleet: setup
	$(BIN)/python -m benchmarks.fleet --sizes 100,1000,5000 --stores sqlite,postgresql $(ARGS)

clean:
	rm -rf demo-workspace .pytest_cache
