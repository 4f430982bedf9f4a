VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m simulator.demo reports/demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# nightly: the Hypothesis property tests with thousands of examples each
soak: $(STAMP)
	HYPOTHESIS_PROFILE=nightly $(PY) -m pytest tests/test_reference_properties.py

bench: $(STAMP)
	$(PY) -m simulator.bench reports/bench

clean:
	rm -rf $(VENV) reports/demo reports/bench
