# Two commands do all set-up on a fresh machine (see README):
#   make demo   - create .venv, install pocketsam, generate a scene and segment it
#                 (CHECKPOINT=path/to/mobile_sam.pt or any SAM-family checkpoint)
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

CHECKPOINT ?= ../shared/golden/vit_t_random.pt

demo: $(STAMP)
	$(BIN)/pocketsam data synth --out out/demo/scenes --num-images 1 --size 480,640 --seed 0 --quiet
	$(BIN)/pocketsam segment out/demo/scenes/sa_000001.jpg --checkpoint $(CHECKPOINT) \
		--point 320,240 --multimask --out out/demo/segment
