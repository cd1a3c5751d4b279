# The two commands a newcomer needs (see README):
#   make demo   - set up everything, start the local stack and a worker, replay sample traffic
#   make test   - set up everything, then lint, type-check and run every test (CI runs this)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck unit integration system-deps console-assets stack-down clean bench

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required; found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

system-deps:
	@scripts/system-deps.sh

# The console's charting library, from npm, pinned by the lock file (not kept in the repository).
ASSETS := streams/console/assets
console-assets: system-deps
	@test -f $(ASSETS)/node_modules/chart.js/dist/chart.umd.min.js || \
		npm ci --prefix $(ASSETS) --no-audit --no-fund --loglevel=error

demo: $(STAMP) system-deps console-assets
	$(BIN)/guetteur demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) system-deps console-assets lint typecheck
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Speed figures as ratios to a baseline measured in the same run (see bench/).
bench: $(STAMP)
	$(BIN)/python -m bench.history_bench
	$(BIN)/python -m bench.worker_bench
	$(BIN)/python -m bench.latency_bench
	$(BIN)/python -m bench.detect_bench
	$(BIN)/python -m bench.foreign_bench

stack-down: $(STAMP)
	$(BIN)/guetteur stack down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-output $(ASSETS)/node_modules
