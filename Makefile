# Every target sets itself up: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pyodejl demo --out results

test: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest -q -n $(JOBS) --dist loadscope --durations=15

test-slow: $(STAMP)
	MPLBACKEND=Agg $(PY) -m pytest -q -n $(JOBS) -m slow

bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) benchmarks/hessian_speed.py
	$(PY) benchmarks/spectral_matvecs.py

clean:
	rm -rf $(VENV) results .pytest_cache
