# Quick start: `make run`, then `make test`. Both bootstrap .venv from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sim run scenarios/burst.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The tests not marked slow, live or soak (tests/conftest.py): under a minute on 2 cores.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not live and not soak"

lint: $(STAMP)
	$(BIN)/ruff check sim tests bench
	$(BIN)/mypy sim
	$(BIN)/lint-imports --no-logo

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) reports/*/ .pytest_cache
