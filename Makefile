# Two commands on a fresh clone: `make demo` (stack up + demo run) and `make test` (full suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint stack-up stack-down stack-reset bench

$(BIN)/participants: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/participants

install: $(BIN)/participants

stack-up: install
	scripts/stack up

stack-down:
	scripts/stack down

stack-reset: install
	scripts/stack reset

demo: stack-up
	scripts/demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check processor producer dashboard tests bench
	$(BIN)/mypy

test: stack-up lint
	$(BIN)/pytest -q tests

bench: stack-up
	$(BIN)/python -m bench.run
