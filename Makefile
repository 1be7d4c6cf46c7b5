# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/labtrack demo

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python -m bench

lint: venv
	$(BIN)/ruff check labtrack tests bench
	$(BIN)/mypy labtrack
	$(BIN)/mypy --strict labtrack/core

clean:
	rm -rf $(VENV) .bench .pytest_cache .mypy_cache .ruff_cache
