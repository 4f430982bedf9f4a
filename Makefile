VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# stripe-node for the HTTP fidelity tests (tests/node); without npm they skip locally (CI has it)
NODE_STAMP := tests/node/node_modules/.installed
# the Node checkout service black-box mode puts through its scenarios (examples/node-checkout)
EXAMPLE_STAMP := examples/node-checkout/node_modules/.installed

.PHONY: demo test lint bench soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/node && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: the stripe-node fidelity tests will be skipped"; \
	fi

$(EXAMPLE_STAMP): examples/node-checkout/package.json examples/node-checkout/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd examples/node-checkout && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "npm not found: the Node example's black-box test will be skipped"; \
	fi

demo: $(STAMP)
	$(PY) -m simulator.demo reports/demo

test: $(STAMP) $(NODE_STAMP) $(EXAMPLE_STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# nightly: the Hypothesis property tests with thousands of examples each
soak: $(STAMP)
	HYPOTHESIS_PROFILE=nightly $(PY) -m pytest tests/test_reference_properties.py tests/test_webhook_fuzz.py

bench: $(STAMP)
	$(PY) -m simulator.bench reports/bench

clean:
	rm -rf $(VENV) reports/demo reports/bench examples/node-checkout/node_modules
