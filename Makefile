# Two commands do all set-up on a fresh machine (see README):
#   make demo   - create .venv, install pocketsam, segment the example scene with the
#                 bundled model (CHECKPOINT=path/to/mobile_sam.pt for your own weights)
#   make test   - create .venv, install pocketsam + test deps, run the test suite
#   make model  - reproduce the bundled model from scratch (synthetic data + training, CPU)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The torch put into a new .venv (the one the tests run with); a .venv that already has
# a torch keeps it, since pocketsam only needs torch>=2.4. Any pip requirement works,
# e.g. TORCH_SPEC='torch --index-url https://download.pytorch.org/whl/cpu'.
TORCH_SPEC ?= torch==2.13.0

# What the library, the CLI, make demo and make model need: pocketsam and its dependencies.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

# The test suite also needs pytest and the ONNX extra (speed-mode tests).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,onnx,serve]'
	touch $(TEST_STAMP)

install: $(STAMP)

test: $(TEST_STAMP) web browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

# `pocketsam serve`'s browser decoder: onnxruntime-web from the npm registry (versions
# pinned by web/package-lock.json), the three files the page loads copied into the
# package's static folder (git-ignored). Without npm (and no way to install it) the page
# decodes on the server and the browser-decoder test skips, saying why.
ORT_DIR := src/pocketsam/web/static/vendor/ort
ORT_FILES := ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm
ORT_STAMP := $(ORT_DIR)/.package-lock.json
AS_ROOT_APT := [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

web: $(ORT_STAMP)

$(ORT_STAMP): web/package.json web/package-lock.json
	@if ! command -v npm >/dev/null 2>&1 && $(AS_ROOT_APT); then \
		echo "make web: installing nodejs and npm (apt-get)"; \
		$(APT_INSTALL) nodejs npm >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && $(APT_INSTALL) nodejs npm >/dev/null 2>&1; } || true; \
	fi
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error && \
		mkdir -p $(ORT_DIR) && cp $(addprefix web/node_modules/onnxruntime-web/dist/,$(ORT_FILES)) $(ORT_DIR)/ && \
		cp web/package-lock.json $(ORT_STAMP) && echo "make web: onnxruntime-web installed into $(ORT_DIR)" \
		|| echo "make web: npm could not install onnxruntime-web: pocketsam serve will decode on the server"; \
	else \
		echo "make web: npm not found and not installable here: pocketsam serve will decode on the server"; \
	fi

# Chromium for the real-browser test (Debian's package; Playwright drives it).
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif $(AS_ROOT_APT); then \
		echo "make browser: installing chromium (apt-get)"; \
		$(APT_INSTALL) chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && $(APT_INSTALL) chromium >/dev/null 2>&1; } \
			|| echo "make browser: could not install chromium: the browser test will skip"; \
	else echo "make browser: chromium not found (and not root with apt-get): the browser test will skip"; fi

# The web app with the model of CHECKPOINT (default: the bundled one) on http://127.0.0.1:8000/
serve: $(STAMP) web
	$(BIN)/python -m pip install -q -e '.[serve,onnx]'
	$(BIN)/pocketsam serve $(CKPT_ARG)

# a path, or official weights by name after `pocketsam download NAME` (e.g. CHECKPOINT=mobile_sam);
# the demo's output is replaced when the checkpoint changes (--overwrite), kept otherwise
CHECKPOINT ?=
CKPT_ARG := $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),)

demo: $(STAMP)
	$(BIN)/pocketsam segment examples/scene.jpg $(CKPT_ARG) --point 190,155 --multimask --out out/demo/segment
	$(BIN)/pocketsam everything examples/scene.jpg $(CKPT_ARG) --mode hierarchical --out out/demo/everything --overwrite

# The bundled model, end to end: 3,000 synthetic scenes; 4,000 steps from scratch, then
# 2,000 and 3,600 more, each from the previous weights with a fresh warm-up and cosine
# (~4.5 h on 2 CPU cores in all); exported as fp16 safetensors into the package with
# the "everything" thresholds chosen by bench/everything_thresholds.py on held-out
# scenes (see README); then a proposal head for 'everything --mode boxes' (SAM frozen).
MODEL_RUN ?= out/model
EVERYTHING_THRESHOLDS ?= --pred-iou-thresh 0.4 --stability-score-thresh 0.6 --high-score-thresh 1
model: $(STAMP)
	$(BIN)/pocketsam data synth --out $(MODEL_RUN)/scenes --num-images 3000 --size 256,256 --seed 1 --quiet
	$(BIN)/pocketsam train --data $(MODEL_RUN)/scenes --out $(MODEL_RUN)/run --arch pocketsam_tiny \
		--steps 4000 --batch-size 8 --masks-per-image 8 --rounds 1 --lr 8e-4 --warmup 150 \
		--focal-weight 1 --dice-weight 1 --workers 1 --threads 2 --eval-every 250 --save-every 250 \
		--log-every 25 --val-images 32 --seed 0 --resume
	$(BIN)/pocketsam train --data $(MODEL_RUN)/scenes --out $(MODEL_RUN)/finetune --init $(MODEL_RUN)/run/model.safetensors \
		--steps 2000 --batch-size 8 --masks-per-image 8 --rounds 1 --lr 4e-4 --warmup 80 \
		--focal-weight 1 --dice-weight 1 --workers 1 --threads 2 --eval-every 500 --save-every 100 \
		--log-every 25 --val-images 32 --seed 1 --resume
	$(BIN)/pocketsam train --data $(MODEL_RUN)/scenes --out $(MODEL_RUN)/finetune2 --init $(MODEL_RUN)/finetune/model.safetensors \
		--steps 3600 --batch-size 8 --masks-per-image 8 --rounds 1 --lr 4e-4 --warmup 80 \
		--focal-weight 1 --dice-weight 1 --workers 1 --threads 2 --eval-every 600 --save-every 100 \
		--log-every 25 --val-images 32 --seed 2 --resume
	$(BIN)/pocketsam train-proposals --checkpoint $(MODEL_RUN)/finetune2/model.safetensors --data $(MODEL_RUN)/scenes \
		--out $(MODEL_RUN)/proposals --steps 1500 --batch-size 16 --lr 2e-3 --warmup 50 --val-images 32 \
		--eval-every 250 --log-every 50 --save-every 100 --workers 0 --threads 2 --seed 0 --resume
	$(BIN)/pocketsam export $(MODEL_RUN)/proposals/model.safetensors --dtype fp16 $(EVERYTHING_THRESHOLDS) \
		--out src/pocketsam/assets/pocketsam_tiny_synth.safetensors

.PHONY: install test demo model web browser serve
