# Quickstart: `make demo` runs the main job, `make test` runs the test suite (`make test-fast`: its fast tier).
# Both bootstrap what is missing: a local venv, CPU torch and the compiled extension.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastleak-installed
SOURCES := setup.py pyproject.toml $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel ninja
	$(PY) -m pip install -q "$(TORCH_SPEC)" numpy  # the build imports both
	$(PY) -m pip install -q --no-build-isolation -e ".[test,ray,flower]"
	$(PY) -c "import fastleak._ext as ext; print(ext.describe())"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fastleak demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: $(STAMP)  # every package, without the tests marked slow
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

bench: $(STAMP)
	$(PY) -m fastleak bench --suite ops

clean:
	rm -rf build *.egg-info fastleak/_C*.so
