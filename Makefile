VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# stripe-node for the HTTP fidelity tests (tests/node); without npm they skip locally (CI has it)
NODE_STAMP := tests/node/node_modules/.installed
# the Node checkout service black-box mode puts through its scenarios (examples/node-checkout)
EXAMPLE_STAMP := examples/node-checkout/node_modules/.installed

.PHONY: demo test lint bench soak guided clean

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

# issue 12's closing figures: branches the coverage-guided search reaches beyond the CI suite's
# coverage, for the reference and the seed engines (baselines and searches in reports/guided/)
GUIDED_EXAMPLES ?= 1000
GUIDED_WORKERS ?= 2
guided: $(STAMP)
	@set -e; mkdir -p reports/guided; for engine in reference seed; do \
		echo "== $$engine"; \
		echo "paysim suite scenarios/ci --engine $$engine --coverage --workers $(GUIDED_WORKERS) --out reports/guided/ci-$$engine"; \
		$(VENV)/bin/paysim suite scenarios/ci --engine $$engine --coverage --workers $(GUIDED_WORKERS) \
			--out reports/guided/ci-$$engine > reports/guided/ci-$$engine.log 2>&1 || test $$? -eq 1; \
		grep '^engine coverage' reports/guided/ci-$$engine.log; \
		echo "paysim explore --guided scenarios/ci --engine $$engine --baseline reports/guided/ci-$$engine --max-examples $(GUIDED_EXAMPLES) --seed 1 --workers $(GUIDED_WORKERS) --out reports/guided/search-$$engine"; \
		$(VENV)/bin/paysim explore --guided scenarios/ci --engine $$engine \
			--baseline reports/guided/ci-$$engine --max-examples $(GUIDED_EXAMPLES) --seed 1 \
			--workers $(GUIDED_WORKERS) --out reports/guided/search-$$engine \
			> reports/guided/search-$$engine.log 2>&1 || test $$? -eq 1; \
		tail -n 1 reports/guided/search-$$engine.log; \
	done

bench: $(STAMP)
	$(PY) -m simulator.bench reports/bench

clean:
	rm -rf $(VENV) reports/demo reports/bench examples/node-checkout/node_modules
