# Two commands on a fresh clone: `make demo` (stack up + demo run) and `make test` (full suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint test-deps stack-up stack-down stack-reset bench bench-quick

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
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Debian's Chromium for the browser tests (no browser downloads).
test-deps:
	@command -v chromium >/dev/null || { echo "installing chromium (Debian package)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The full suite: lint, types, unit, integration (real Kafka + PostgreSQL) and browser tests.
# pytest's exit 5 (no tests collected) is turned into a failure.
test: stack-up lint test-deps
	$(BIN)/pytest -q -p no:cacheprovider tests; rc=$$?; \
	  if [ $$rc = 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Benchmarks (medians and ratios against baselines measured in the same run); `make bench-quick` for a smoke run.
bench: stack-up
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.dashboard_bench
	$(BIN)/python -m bench.secure

bench-quick: stack-up
	$(BIN)/python -m bench.run --quick
