# `make demo` and `make test` set everything up on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-slow docs lock clean

install: $(VENV)/.installed

# Exactly the measured stack (requirements.lock); pyproject.toml's ranges serve other installs.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $@

# The newest versions pyproject.toml's ranges allow, frozen into requirements.lock (then run the checks).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e ".[dev]"
	(sed -n '/^#/p' requirements.lock; .venv-lock/bin/python -m pip freeze --exclude-editable) > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .venv-lock

demo: install
	$(PY) train.py --config=configs/demo.py --workdir=runs/demo-$$(date +%Y%m%d-%H%M%S)

# The documentation site (MkDocs Material) into site/, warnings as errors; `mkdocs serve` to browse it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# Two test processes: most of a test's time is one core compiling or stepping an env.
test: install
	$(PY) -m pytest -q -n 2 --dist worksteal

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
