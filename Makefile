# medbench: the README's commands. The Makefile makes its own virtual environment from uv.lock.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
# installed packages get their bytecode at install: without it every process (each `medbench` command, each
# test worker) compiles dagster, pandas and scikit-learn from source again, 5-6 s, where PYTHONDONTWRITEBYTECODE is set
export UV_COMPILE_BYTECODE := 1
export UV_CACHE_DIR ?= $(CURDIR)/.uv-cache
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.PHONY: demo test dev bench install install-dev install-deploy clean mutation

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# the project's own modules too: the worker processes import them afresh (pipelines.processes.lean_context)
COMPILE := $(VENV)/bin/python -m compileall -q -j 0 pipelines assets cli > /dev/null

install: $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	$(COMPILE)

install-dev: $(UV)
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	$(COMPILE)

## install-deploy: the deployment extras together (Postgres storage, Celery workers, Kubernetes run launcher);
## `uv sync` keeps exactly the extras it is given, so installing one alone removes the others
install-deploy: $(UV)
	$(UV) sync --frozen --extra deploy --python $(PYTHON)
	$(COMPILE)

## demo: build the whole asset graph on the bundled demo datasets (offline, SQLite Dagster)
demo: install
	$(VENV)/bin/medbench demo prepare
	$(VENV)/bin/medbench build

## test: run the test suite
# loadfile: each test module runs on one worker, so its module-scoped build is made once (xdist's loadgroup
# does not group under pytest 9: it rewrites item._nodeid, which pytest 9 no longer reads); the ../shared build
# is shared between workers through a file lock (tests/conftest.py: shared_build)
PYTEST_ARGS ?= -n auto --dist loadfile
test: install-dev
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; exit $$rc

## dev: the Dagster UI on http://127.0.0.1:3000 with the project's definitions
dev: install
	$(VENV)/bin/medbench demo prepare
	$(VENV)/bin/medbench dagster-home >/dev/null
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

## bench: throughput and memory measurements (see bench/README.md)
bench: install-dev
	$(VENV)/bin/python -m bench.run_all

## mutation: mutmut over the modules listed in [tool.mutmut] only_mutate (pyproject.toml), run in a copy of the
## tracked tree under MUTATION_DIR so mutants/ never lands in the checkout; prints the per-module table of
## docs/mutation.md. Not part of `make test` or CI (it takes tens of minutes on two cores).
## MUTANTS="pipelines.geometry*" limits the run to matching mutant names (module by module on a slow machine).
MUTATION_DIR ?= /tmp/medbench-mutation
mutation: install-dev
	rm -rf $(MUTATION_DIR) && mkdir -p $(MUTATION_DIR)
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C $(MUTATION_DIR)
	cd $(MUTATION_DIR) && DAGSTER_HOME=$(MUTATION_DIR)/.dagster $(CURDIR)/$(VENV)/bin/mutmut run $(MUTANTS) || true
	cd $(MUTATION_DIR) && $(CURDIR)/$(VENV)/bin/python tests/mutation_table.py

clean:
	rm -rf data .dagster
