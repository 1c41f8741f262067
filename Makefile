# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv and installs the project into it first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m training.demo --out demo-output

test: install
	$(PY) -m pytest -q -ra

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/build_h5.py
	$(PY) benchmarks/crawl_loc.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf demo-output .pytest_cache
