# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv and installs the project into it first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install demo serve test test-fast bench cv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m demo --out demo-output

# the grouped cross-validation of the training defaults on every folder of ../shared/data (about 40 min on 2 cores)
cv: install
	$(PY) -m training.cv --out reports/cv/defaults --name defaults --readme README.md

# the page and API on the demo's model (make demo first): http://127.0.0.1:8000/
serve: install
	@test -f demo-output/run/model.keras || { echo "serve: no demo model in demo-output/run; run make demo first" >&2; exit 2; }
	$(PY) -m service demo-output/run

# scripts/system-deps: the Debian packages the tests use (redis-server, chromium, ...), installed when missing
test: install
	scripts/system-deps
	$(PY) -m pytest -q -ra

test-fast: install
	scripts/system-deps
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/build_h5.py
	$(PY) benchmarks/crawl_loc.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/serve.py

clean:
	rm -rf demo-output .pytest_cache
