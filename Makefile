# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORDNET := /usr/share/wordnet/data.noun
CHROMEDRIVER := /usr/bin/chromedriver
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test test-slow test-gpu bench clean

setup: $(STAMP) $(WORDNET) $(CHROMEDRIVER)

# Debian's WordNet 3.0 database: the demo tenants are built from its glosses.
$(WORDNET):
	@echo "installing Debian package wordnet-base (WordNet 3.0 database)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wordnet-base >/dev/null

# Debian's Chromium and its driver: the review page's end-to-end test drives a real browser
# (selenium; a browser download at run time does not work on CI).
$(CHROMEDRIVER):
	@echo "installing Debian packages chromium and chromium-driver (browser test of the review page)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null

$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (first time: several minutes)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/tailor --workspace demo-workspace demo

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

test-gpu: setup
	$(BIN)/python -m pytest -q -m gpu

bench: setup
	$(BIN)/python -m benchmarks.meta_learning

clean:
	rm -rf demo-workspace .pytest_cache
