# A fresh clone needs only `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch 2.13.0 is the version the project is tested with; a CPU build is enough for
# everything here. GPU users: put the torch build for your CUDA into .venv first
# (see README), and `make install` keeps it.
TORCH ?= torch==2.13.0

.PHONY: install test test-slow lint demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[test]"
	touch $@

test: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/pytest

test-slow: install
	$(BIN)/pytest -m slow

lint: install
	$(BIN)/ruff check --fix src tests scripts
	$(BIN)/ruff format src tests scripts

demo: install
	$(BIN)/unsee demo

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
