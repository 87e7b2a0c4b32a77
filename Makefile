# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Tests run on 3 workers by default: on the 2-core reference machine they mostly wait on the local
# stack, and a third worker took the tests from 9:43 to 7:33 (the notebooks, beside them, take ~7).
PYTEST_WORKERS ?= 3
# Extra pytest options for the tests (not the notebooks), e.g. PYTEST_ARGS='-k capture --durations=20'.
PYTEST_ARGS ?=
# The exact versions CI tested, as pip constraints: every install goes through them. `make lock` refreshes it.
CONSTRAINTS := constraints.txt

.PHONY: setup java demo test lint lock lab up down status bench clean

# The Python and npm installs run side by side (each waits mostly on downloads); each one's output stays in one piece.
setup: java
	@$(MAKE) --no-print-directory -j2 --output-sync=target $(VENV)/.installed node_modules/.installed

# Apache Spark (notebook 08 and its tests) needs a Java 17+ runtime; say so before anything else runs.
java:
	@command -v java >/dev/null || { echo "Java 17+ is needed for Apache Spark (notebook 08, make test): install a JDK or JRE 17+, e.g. apt-get install openjdk-17-jre-headless, brew install openjdk@17, or conda install openjdk>=17"; exit 1; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	[ "$${v:-0}" -ge 17 ] || { echo "Java 17+ is needed for Apache Spark (notebook 08, make test); found Java $${v:-unknown}: install a JDK or JRE 17+"; exit 1; }

# pip byte-compiles on one core, a third of the install (pyspark and jupyterlab ship thousands of modules):
# compileall does it on every core. Compiled up front, since with PYTHONDONTWRITEBYTECODE (set on the CI
# machine) Python never writes .pyc files itself, and every process would compile what it imports.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed: run make with PYTHON=python3.11 (or newer)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -c $(CONSTRAINTS) -e '.[dev]'
	$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
	@touch $@

# Refresh constraints.txt after changing dependencies (see .ci/lock): pins already there are kept
# where they still fit, new packages get their newest release; UPGRADE=1 moves everything to the
# newest releases pyproject.toml allows. The next `make setup` (or `make test`) installs the lock.
lock:
	PYTHON=$(PYTHON) .ci/lock

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 18+ with npm is needed for Azurite (the local Blob emulator)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# DEMO_ARGS: e.g. --full, or --blob-port 0 --eventhub-port 0 when the default ports are taken.
demo: setup
	IOTLIB_SCALE=small $(PY) -m iotlib demo $(DEMO_ARGS)

# Lint and format (ruff) and types (mypy) over the package, tests and benchmarks.
lint: setup
	$(VENV)/bin/ruff check iotlib tests benchmarks conftest.py
	$(VENV)/bin/ruff format --check iotlib tests benchmarks conftest.py
	$(VENV)/bin/mypy

# Tests run on PYTEST_WORKERS workers, a module per worker at a time (each test module owns an event hub),
# the longest modules first (conftest.LONGEST_FIRST; xdist would otherwise start the modules with most tests first).
# The notebooks run meanwhile in a session of their own (its own local stack), one after another
# since they share the `telemetry` hub; their output follows the tests'.
# The numba decoders (and iotlib's .pyc files) are compiled once while lint runs, so that the test
# workers and the notebook kernels all start with it warm instead of compiling side by side.
test: setup
	@$(PY) -m compileall -q iotlib; $(PY) -m iotlib.coldstore.precompile & compiling=$$!; \
	$(MAKE) --no-print-directory lint || { wait $$compiling; exit 1; }; wait $$compiling
	@log=$$(mktemp); status=0; \
	$(PY) -m pytest --nbval-lax --nbval-current-env notebooks --nbval-cell-timeout=600 > $$log 2>&1 & notebooks=$$!; \
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS) tests || status=$$?; \
	wait $$notebooks || status=$$?; \
	cat $$log; rm -f $$log; exit $$status

lab: setup
	$(VENV)/bin/jupyter lab notebooks

up: setup
	$(PY) -m iotlib up

down:
	$(PY) -m iotlib down

status:
	$(PY) -m iotlib status

bench: setup
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	-$(PY) -m iotlib down
	rm -rf $(VENV) node_modules .iotlib .pytest_cache
