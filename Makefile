# Two commands on a fresh clone: `make demo` (stack up + demo run) and `make test` (full suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install lock demo test lint test-deps stack-up stack-down stack-reset bench bench-quick soak

LOCK := requirements.lock
RUNTIME_LOCK := requirements-runtime.lock

# Every package from the lock, each checked against its hashes; then this project alone (its build backend,
# setuptools, is in the lock too, so nothing is fetched unhashed).
$(BIN)/participants: pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(BIN)/participants

install: $(BIN)/participants

# Regenerates the locks from pyproject.toml for Python 3.11 on Linux: requirements.lock (runtime and the test
# extra: `make install`, CI) and requirements-runtime.lock (the same versions, runtime only: the Docker image).
# Pins already in the lock are kept; `make lock LOCK_ARGS=--upgrade` moves everything to the newest releases,
# `make lock LOCK_ARGS='--upgrade-package fastapi'` one package.
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --all-build-deps --strip-extras \
  --no-emit-index-url --no-emit-trusted-host --no-emit-find-links
LOCK_ARGS ?=
lock: install
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) --extra test \
	  --output-file $(LOCK) pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) --constraint $(LOCK) \
	  --output-file $(RUNTIME_LOCK) pyproject.toml

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
	$(BIN)/python -m bench.sunbird_api

bench-quick: stack-up
	$(BIN)/python -m bench.run --quick

# 30 minutes of mixed uploads while a processor, the database or the broker is restarted every 2 minutes; then
# `store verify` and the results/events cross-checks (bench/soak.py). Not part of `make test`: heavy, and it
# restarts this worktree's PostgreSQL cluster and broker. SOAK_ARGS='--minutes 5' for a short run.
SOAK_ARGS ?=
soak: stack-up
	nice -n 10 $(BIN)/python -m bench.soak --minutes 30 --report bench/RESULTS-$$(date +%F)-soak.txt $(SOAK_ARGS)
