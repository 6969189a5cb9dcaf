# Two commands do everything on a fresh machine (they create .venv themselves):
#   make run   - execute all notebooks headless in quick mode, figures into figures/
#   make test  - lint, notebook hygiene, and the whole test suite (notebooks included)
# `make run FULL=1` runs the full mode (meant for a GPU machine).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ngl-installed
PYTEST_ARGS ?=

.PHONY: run test lint install browser-deps clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	MPLBACKEND=Agg $(PY) -m ngl.ui.notebook_runner $(if $(FULL),--full,)

lint: $(STAMP)
	$(VENV)/bin/ruff check ngl tests benchmarks notebooks/*.py
	$(VENV)/bin/nbstripout --keep-id --verify notebooks/*.ipynb
	$(VENV)/bin/lint-imports --no-cache

test: lint
	NGL_QUICK=1 MPLBACKEND=Agg TQDM_DISABLE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf runs/executed .pytest_cache .ruff_cache
