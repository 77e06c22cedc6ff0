# Norn: `make run` and `make test` do all the set-up on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The demo: the Rune-Midgarts world serving the bridge, with a simulated rAthena map server
# (200 players) connected over a real ZeroMQ socket; 300 ticks of 100 ms in realtime.
run: $(STAMP)
	$(BIN)/norn run --replace --out runs/demo --ticks 300 --sim-players 200

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-json=bench/results/pytest-benchmark.json

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
