# The README names these targets; `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit integration lint precommit bench clean deps

## deps: the Debian packages the demo and the tests use (docker.io, mmdebstrap, ...)
deps:
	bash scripts/ensure-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.3'
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: the main job in a throw-away repo: lock, build, record, rebuild from an empty store
demo: deps $(STAMP)
	$(BIN)/python scripts/demo.py

## test: lint, type-check and run the whole suite (unit + integration, nothing skipped)
test: deps lint precommit $(STAMP)
	$(BIN)/pytest -p no:cacheprovider tests

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

lint: $(STAMP)
	$(BIN)/ruff check envlock tests bench
	$(BIN)/ruff format --check envlock tests bench
	$(BIN)/mypy envlock

## precommit: the repository's own pre-commit hooks (envlock-verify over specs/), as a user runs them
precommit: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pre-commit run --all-files --show-diff-on-failure

## bench: run every benchmark in bench/ that fits a laptop and print the ratios
## (bench_cuda.py and bench_corpus.py download gigabytes: run them by hand, see bench/README.md)
bench: $(STAMP)
	$(BIN)/python bench/bench_lock.py
	$(BIN)/python bench/bench_verify.py
	$(BIN)/python bench/bench_diff.py
	$(BIN)/python bench/bench_records.py
	$(BIN)/python bench/bench_import.py
	$(BIN)/python bench/bench_doctor.py
	$(BIN)/python bench/bench_build.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info
