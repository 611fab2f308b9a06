# The README's two set-up commands. Each creates its own virtual environment and installs
# everything it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test demo bench web-vendor clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Runs the service on the embedded default (SQLite file var/cdp.db) with the Luma demo data,
# loaded over HTTP on the first start (about 20 s more; bench/RESULTS.md). The first start prints
# the bootstrap admin key once, with a ready `export KEY=...` line. API docs: http://127.0.0.1:8000/docs
run: $(STAMP)
	$(BIN)/cdp serve --demo

# Plays the Luma story (SPEC.md, steps 1-9) against a server of its own, narrated.
demo: $(STAMP)
	$(BIN)/cdp demo

# Two workers (pytest-xdist): the suite waits on servers and databases as much as it computes, so
# two share a 2-core machine well. Still one PostgreSQL, one Spark and one browser per run
# (tests/conftest.py). `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope

bench:
	bash bench/run.sh

# Rebuilds the web page's library bundles (cdp/web/static/vendor/, committed) from web/package-lock.json.
# Only after changing web/package.json: building and running cdp never needs npm.
web-vendor:
	cd web && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
