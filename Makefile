# Two commands do all set-up on a fresh machine (see README):
#   make demo   - create .venv, install pocketsam, segment an example image
#   make test   - create .venv, install pocketsam + test deps, run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,onnx]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/pocketsam segment $(DEMO_IMAGE) $(DEMO_ARGS) --out out/demo

.PHONY: install test demo
