# Every target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: setup demo test test-slow bench lint docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,lint,docs,data,laplace]'
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pyodejl demo --out runs/demo

# one BLAS thread per test worker: the workers already use every core
test: $(STAMP)
	# a hang fails the run in 30 minutes, not at CI's limit
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg timeout 1800 $(PY) -m pytest -q -n $(JOBS) --dist loadscope --durations=15

test-slow: $(STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg $(PY) -m pytest -q -n $(JOBS) -m slow

bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) benchmarks/hessian_speed.py
	$(PY) benchmarks/spectral_matvecs.py

# ruff with the rule set stated in pyproject.toml ([tool.ruff.lint])
lint: $(STAMP)
	$(VENV)/bin/ruff check pyodejl tests benchmarks examples

# API reference from the docstrings (MkDocs + mkdocstrings); --strict turns warnings into errors
docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site
