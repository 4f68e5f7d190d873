# `make demo` and `make test` set everything up on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-slow clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(PY) train.py --config=configs/demo.py --workdir=runs/demo-$$(date +%Y%m%d-%H%M%S)

# Two test processes: most of a test's time is one core compiling or stepping an env.
test: install
	$(PY) -m pytest -q -n 2 --dist worksteal

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
