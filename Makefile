# `make demo` and `make test` each do their own set-up on a fresh machine: a virtualenv in
# .venv with the package built from source (Rust, via maturin) and its test tools.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SOURCES := Cargo.toml pyproject.toml $(shell find rust python -type f -not -name '*.pyc' -not -name '*.so')

.PHONY: demo test test-rust test-python lint bench clean

$(VENV)/.installed: $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m dynamic_streams.examples.library

test: lint test-rust test-python

lint: $(VENV)/.installed
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest dynamic_streams._native

test-rust:
	cargo test

test-python: $(VENV)/.installed
	$(VENV)/bin/pytest

# Benchmarks are not tests: run on purpose. See benches/run.py for the sizes and the DSN.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) benches/run.py

clean:
	rm -rf $(VENV) target
