PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo bench lint clean

$(STAMP): pyproject.toml agent/pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e './agent[ort,worker]'
	$(BIN)/pip install -q -e '.[dev,fleet]'
	touch $(STAMP)

setup: $(STAMP)
	bash scripts/install_redis.sh

test: setup
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
	$(BIN)/ruff check agent
	$(BIN)/vermin --target=3.8- --no-tips --violations agent/
	$(BIN)/mypy nasctl

clean:
	rm -rf $(VENV) runs build *.egg-info
