"""The speed modes' names (:func:`pocketsam.runtime.optimize` runs them)."""

from __future__ import annotations

from pocketsam.errors import InputError

MODES = ("reference", "default", "bf16", "int8", "compile", "onnx", "openvino", "fast")


def check_mode(mode: str) -> str:
    """The canonical name of a speed mode (aliases: fp32, none, ort, bfloat16).

    Raises:
        InputError: an unknown mode.
    """
    key = (mode or "default").lower().replace("_", "-")
    key = {"fp32": "default", "none": "reference", "ort": "onnx", "bfloat16": "bf16"}.get(key, key)
    if key not in MODES:
        raise InputError(f"unknown speed mode '{mode}'", f"use one of {', '.join(MODES)}")
    return key
