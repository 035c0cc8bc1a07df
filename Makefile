PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
SHARED ?= ../shared
# Every install reads its versions from the lock (`make lock` regenerates it); pyproject.toml
# keeps ranges. The lock pins torch 2.13.0+cpu, whose wheel pip takes from the local disk.
LOCK := requirements.lock
PIP_INSTALL := $(BIN)/pip install -q -c $(LOCK)
UV_VERSION := 0.13.9

.PHONY: demo test lint typecheck unit install install-dev bench lock smoke-base clean browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(PIP_INSTALL) -e .
	touch $@

$(DEVSTAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(PIP_INSTALL) -e '.[dev,serve,onnx]'
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(DEVSTAMP)

demo: $(STAMP)
	$(BIN)/mtrs quickstart --out runs/quickstart --overwrite

# The lock: every package of the base install and of every extra, transitive ones included,
# resolved by uv from pyproject.toml under constraints.txt (the torch pin). Run after changing
# a dependency in pyproject.toml, then commit requirements.lock.
lock: $(BIN)/python
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --all-extras -c constraints.txt \
	  --find-links /opt/wheels --python-version 3.11 --quiet -o $(LOCK)

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python $(SHARED)/tools/check_imports.py

typecheck: $(DEVSTAMP)
	$(BIN)/mypy

# The web page is tested in a real headless browser: Debian's chromium, driven by Playwright
# through its executable path (never `playwright install`). Installed here where apt-get exists.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if command -v apt-get > /dev/null; then \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium > /dev/null; \
	else echo "apt-get unavailable: chromium not installed, the browser test will skip"; fi

browser: $(CHROMIUM)

unit: $(DEVSTAMP) $(CHROMIUM)
	$(BIN)/pytest

test: lint typecheck unit

# The README's first command in a clean environment with the base install only (no extras):
# a base dependency missing from pyproject.toml fails here even when an extra would bring it.
smoke-base:
	rm -rf .venv-base
	$(PY) -m venv .venv-base
	.venv-base/bin/pip install -q --upgrade pip
	.venv-base/bin/pip install -q -c $(LOCK) .
	.venv-base/bin/mtrs --help > /dev/null
	cd .venv-base && bin/mtrs quickstart --out quickstart --events 5000 --users 200 \
	  --items 100 --epochs 2

bench: $(BIN)/python
	$(PIP_INSTALL) -e '.[bench]'
	mkdir -p runs/bench
	$(BIN)/python benchmarks/throughput.py --rows 200000 --repeats 3 --json runs/bench/throughput_2t.json

clean:
	rm -rf $(VENV) .venv-base runs .pytest_cache .mypy_cache .ruff_cache
