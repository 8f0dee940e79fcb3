# Two commands do all the set-up on a fresh machine:
#   make book [SCALE=smoke|small|paper] [DEVICE=auto|cpu|cuda]   the book
#   make test                                                    the fast loop (unit tests)
#   make bench [DEVICE=cuda]                                     the curvature benchmark
# and `make check` runs every test, the slow ones too (the whole book at smoke scale,
# end-to-end runs); CI (.ci/run) runs it.  Each creates .venv and installs
# requirements.txt into it when that is missing.

SCALE  ?= small
DEVICE ?= auto
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: book test check data bench lint clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist; installed here when possible.
data: $(STAMP)
	@PY=$(PY) sh scripts/ensure-data.sh

book: $(STAMP) data
	$(PY) -m hessnoise.book --scale $(SCALE) --device $(DEVICE)

test: $(STAMP) data
	$(PY) -m pytest -q -m "not slow"

check: $(STAMP) data
	$(PY) -m pytest -q

# Optional: PyHessian and curvlinops are installed into .venv only for the benchmark.
# `make bench DEVICE=cuda` benchmarks the GPU instead: _build/bench/curvature-cuda.json.
BENCH_DEVICE = $(if $(filter cuda,$(DEVICE)),cuda,cpu)
bench: $(STAMP) data
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) scripts/bench_curvature.py --device $(BENCH_DEVICE)
	@if [ "$(BENCH_DEVICE)" = cpu ]; then $(PY) scripts/bench_threads.py; fi

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) scripts/lint_chapters.py

clean:
	rm -rf _build
