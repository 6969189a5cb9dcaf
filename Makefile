# Two commands do everything on a fresh machine (they create .venv themselves):
#   make run   - execute all notebooks headless in quick mode, figures into figures/
#   make test  - lint, notebook hygiene, and the whole test suite (notebooks included)
# `make run FULL=1` runs the full mode (meant for a GPU machine).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ngl-installed
PYTEST_ARGS ?=
# what git commits of a notebook: no outputs, no execution counts, no kernel language_info
NBSTRIP_ARGS := --keep-id --extra-keys "metadata.language_info metadata.jupytext.text_representation"

.PHONY: run test lint install git-filter browser-deps clean

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[test]'
	$(MAKE) --no-print-directory git-filter
	touch $(STAMP)

install: $(STAMP)

# JupyterLab autosaves outputs into the .ipynb files; this git filter (nbstripout, named in
# .gitattributes) strips them whenever git reads a notebook, so they are never committed and
# `git status` stays clean. Outside a git checkout there is nothing to do.
git-filter:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean '"$(abspath $(PY))" -m nbstripout $(NBSTRIP_ARGS)' && \
	  git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.required true && \
	  git config diff.ipynb.textconv '"$(abspath $(PY))" -m nbstripout -t $(NBSTRIP_ARGS)' && \
	  echo "git filter nbstripout installed (notebook outputs are never committed)"; fi

run: $(STAMP)
	MPLBACKEND=Agg $(PY) -m ngl.ui.notebook_runner $(if $(FULL),--full,)

lint: $(STAMP)
	$(VENV)/bin/ruff check ngl tests benchmarks notebooks/*.py
	@# what git would commit: the staged notebook where git tracks it (the working copy may
	@# hold JupyterLab's outputs, which the git filter strips), else the file itself
	@for f in notebooks/*.ipynb; do \
	  if git ls-files --error-unmatch "$$f" >/dev/null 2>&1; then git show ":$$f"; else cat "$$f"; fi \
	    | $(VENV)/bin/nbstripout $(NBSTRIP_ARGS) --verify >/dev/null || { \
	    echo "$$f: outputs or metadata would be committed; run make git-filter, then git add $$f"; \
	    exit 1; }; done
	$(VENV)/bin/lint-imports --no-cache

test: lint
	NGL_QUICK=1 MPLBACKEND=Agg TQDM_DISABLE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf runs/executed .pytest_cache .ruff_cache
