PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit install install-dev bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(DEVSTAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,serve]'
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(DEVSTAMP)

demo: $(STAMP)
	$(BIN)/mtrs quickstart --out runs/quickstart

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(DEVSTAMP)
	$(BIN)/mypy

unit: $(DEVSTAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[bench]'
	mkdir -p runs/bench
	$(BIN)/python benchmarks/throughput.py --rows 200000 --repeats 3 --json runs/bench/throughput_2t.json

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
