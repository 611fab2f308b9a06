# The README's two set-up commands. Each creates its own virtual environment and installs
# everything it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Runs cdp on the embedded default. Until the HTTP service lands this checks the gift-giving
# cart abandoners segment and evaluates it over the Luma sample profiles.
run: $(STAMP)
	$(BIN)/cdp check "$$(cat examples/gift_giving_cart_abandoners.pql)"
	$(BIN)/cdp evaluate "$$(cat examples/gift_giving_cart_abandoners.pql)" \
		--profiles examples/luma_profiles.jsonl --as-of 2026-11-28T12:00:00Z

test: $(STAMP)
	$(BIN)/python -m pytest

bench:
	bash bench/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
