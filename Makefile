PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo bench lint clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# the edit-test loop: everything but the tests marked slow (CI and `make test` run them all)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

demo: $(STAMP)
	bash scripts/demo.sh

bench: $(STAMP)
	bash bench/run_all.sh

lint: $(STAMP)
	$(BIN)/ruff check nasctl tests bench
	$(BIN)/mypy nasctl

clean:
	rm -rf $(VENV) runs build *.egg-info
