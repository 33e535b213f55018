"""``pocketsam serve``: a click-to-segment web app (:mod:`pocketsam.web.app`).

The server computes each image's embedding once (cached by the SHA-256 of the uploaded
bytes); the page runs the exported SAM-interface decoder (:mod:`pocketsam.export.onnx_sam`)
in the browser with onnxruntime-web, or asks the server to decode when those assets are
not installed (``make web`` installs them from the npm registry into ``static/vendor/``).
"""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor" / "ort"
#: The onnxruntime-web files the page loads (copied from the npm package by ``make web``).
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


def browser_decoder_assets() -> bool:
    """Whether the onnxruntime-web files the page needs are installed."""
    return all((VENDOR_DIR / name).is_file() for name in ORT_FILES)
