# `make demo` and `make test` each do their own set-up on a fresh machine: a virtualenv in
# .venv with the package built from source (Rust, via maturin) and its test tools.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPythons the suite also runs on, each in .venv-<version>, when the machine has them.
PYTHONS ?= 3.10 3.11 3.12 3.13
SOURCES := Cargo.toml pyproject.toml $(shell find rust python -type f -not -name '*.pyc' -not -name '*.so')

.PHONY: help demo test test-rust test-python test-pythons ssl-server lint wheel bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.installed: $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# Builds for one CPython (before the stable ABI) would shadow the abi3 module.
	rm -f python/dynamic_streams/_native.cpython-*.so
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed ## Run the library example on an embedded PostgreSQL
	$(PY) -m dynamic_streams.examples.library

test: lint test-rust test-python test-pythons ## Lint, then the Rust and Python suites (every CPython 3.10-3.13 found)

lint: $(VENV)/.installed ## rustfmt, clippy (pedantic), rustdoc, ruff, mypy (strict), stubtest
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest dynamic_streams._native

test-rust: ## The engine's unit tests (no Python needed)
	cargo test

# The TLS tests need a PostgreSQL built with SSL (the embedded one is not): Debian's package,
# installed here when missing and this is a Debian machine run as root; else they skip.
ssl-server:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && echo "installing Debian's postgresql package for the TLS tests" \
	       && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
	  || echo "no PostgreSQL with SSL and none installable: the TLS tests will skip"

test-python: $(VENV)/.installed ssl-server ## The Python suite on the default interpreter
	$(VENV)/bin/pytest

# One wheel for every CPython from 3.10 (the stable ABI, abi3), built as users get it.
dist/.built: $(SOURCES)
	rm -rf dist
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist .
	touch $@

wheel: $(VENV)/.installed dist/.built ## Build the wheel into dist/ (one abi3 wheel for CPython 3.10+)
	@ls dist/*.whl

# Each CPython in PYTHONS gets a fresh venv with the built wheel installed (not the source
# tree), runs the quick start and the pytest plugin there, and, for all but the default one
# (whose suite ran above against the source tree), the whole suite.
test-pythons: $(VENV)/.installed dist/.built ssl-server ## The wheel on each CPython in PYTHONS: quick start, plugin, suite
	@default=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	pyenv_root=$${PYENV_ROOT:-$$HOME/.pyenv}; \
	wheel=$$(ls dist/*.whl); \
	for v in $(PYTHONS); do \
	  py=""; \
	  for candidate in python$$v $$pyenv_root/versions/$$v.*/bin/python$$v; do \
	    if $$candidate -c '' 2>/dev/null; then py=$$candidate; fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "CPython $$v: not on this machine, skipped"; continue; fi; \
	  echo "CPython $$v ($$py), $$wheel:"; \
	  rm -rf .venv-$$v && $$py -m venv .venv-$$v || exit 1; \
	  .venv-$$v/bin/python -m pip install --quiet --upgrade pip || exit 1; \
	  .venv-$$v/bin/python -m pip install --quiet "$$wheel[test,eventsourcing]" || exit 1; \
	  (cd /tmp && $(CURDIR)/.venv-$$v/bin/python -c 'import dynamic_streams as d, sys; \
	    assert "site-packages" in d.__file__, d.__file__; print("  installed:", d.__file__)') || exit 1; \
	  .venv-$$v/bin/python -m dynamic_streams.examples.library > .venv-$$v/quick-start.log || \
	    { cat .venv-$$v/quick-start.log; exit 1; }; \
	  tail -1 .venv-$$v/quick-start.log; \
	  if [ "$$v" = "$$default" ]; then \
	    .venv-$$v/bin/pytest -q tests/test_parity.py tests/test_tags.py || exit 1; \
	  else \
	    .venv-$$v/bin/pytest -q || exit 1; \
	  fi; \
	done

# Benchmarks are not tests: run on purpose. See benches/run.py for the sizes and the DSN.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-installed ## The benchmarks, side by side with psycopg and eventsourcing
	$(PY) benches/run.py

clean: ## Remove the virtualenvs and the build
	rm -rf $(VENV) $(VENV)-* target dist
