"""``mode="fast"``: the fastest inference path that keeps masks within IoU 0.99 of float32
on this machine; and which int8 backend is faster for a model.

Candidates, from the CPU flags (``/proc/cpuinfo``) and what the model carries:

* ``bf16`` where bfloat16 runs natively (AVX512-BF16 or AMX-BF16 CPUs, CUDA);
* ``int8`` (torch's oneDNN kernels or ONNX Runtime) where the model was loaded from an int8
  artifact whose recorded mask IoU against float32 is at least :data:`IOU_FLOOR` (torch's
  kernels need int8 dot-product instructions, AVX-VNNI, AVX512-VNNI or AMX-INT8; ONNX
  Runtime runs everywhere, with uint8 weights on x86 without them);
* ``onnx:encoder`` (ONNX Runtime's float32 encoder, pocketsam's decoder) where ``onnx``
  and ``onnxruntime`` are installed;
* ``openvino:f32`` and, where OpenVINO has native bf16 kernels, ``openvino:bf16`` (the
  encoder on OpenVINO, pocketsam's decoder) where the ``openvino`` package is installed;
  an OpenVINO NNCF int8 artifact runs as ``int8:openvino``;
* ``default`` always.

Speed comes from a one-off measurement (:func:`model_speedups`: the model's own image
encoder at its input size, every candidate timed alternately, best of 3), cached in
``$POCKETSAM_CACHE/fast_mode.json`` per machine (CPU model, flags, thread count,
torch/onnxruntime versions) and model (weights' hash): which path wins depends on both
(on this project's 2-core Sapphire Rapids VM bf16 won for the 1024² vit_t encoder and int8
through ONNX Runtime for the 256² bundled model; on an AVX2-only AMD EPYC, int8 through
ONNX Runtime for the bundled model, 1.24×). A path must be :data:`MIN_GAIN` times
faster than ``default`` to be chosen. Quality: every path but ``int8`` is checked once per
model (:func:`path_quality`: mask IoU against ``default`` on a generated scene with the
bench's 13 prompts, cached); ``int8`` uses the IoU its artifact recorded. Where nothing qualifies, ``fast`` is ``default``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pocketsam.checkpoints.fingerprint import weights_sha256
from pocketsam.errors import InputError
from pocketsam.io import cache_root, write_json_atomic
from pocketsam.platform import cpu_name, native_bf16, relevant_flags
from pocketsam.runtime import openvino
from pocketsam.runtime.agreement import mask_agreement, scene
from pocketsam.runtime.int8_torch import available as torch_int8_available
from pocketsam.runtime.modes import check_mode
from pocketsam.runtime.onnx import available as onnx_available

IOU_FLOOR = 0.99
MIN_GAIN = 1.1
CACHE_NAME = "fast_mode.json"
OPENVINO_ENV = "POCKETSAM_FAST_OPENVINO"
"""Set to ``0`` to keep the OpenVINO paths out of ``fast``'s candidates (they are in
wherever the ``openvino`` package is installed)."""
Optimize = Callable[..., nn.Module]
"""The runtime's :func:`~pocketsam.runtime.optimize`, passed in (it is the caller)."""


@dataclass
class FastChoice:
    """What ``fast`` chose and why."""

    mode: str
    reason: str
    speedups: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.mode} ({self.reason})"


def _cache_path(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or cache_root()) / CACHE_NAME


def _machine_key() -> str:
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "none"
    text = f"{cpu_name()}|{','.join(relevant_flags())}|threads={torch.get_num_threads()}|torch={torch.__version__}|ort={ort}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(path: Path, key: str, section: str, value) -> None:
    """Merge one entry into the cache file (atomically; a concurrent writer may win, which
    only costs a re-measurement)."""
    data = _load(path)
    data.setdefault(key, {}).setdefault(section, {})
    if isinstance(value, dict) and section == "machine":
        data[key][section] = value
    else:
        data[key][section].update(value)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(data, path)
    except Exception:  # noqa: BLE001 - a read-only cache only costs a re-measurement
        pass


def measure_speedups(model, optimize: Optimize, modes: list[str], repeats: int = 3,
                     cache_dir: str | Path | None = None) -> dict[str, float]:
    """Image-encoder speed-up over ``default`` of each of ``modes`` (``"bf16"``,
    ``"int8:torch"``, ``"int8:onnxruntime"``, ``"onnx:encoder"``, ...) for ``model`` at its input size: best of
    ``repeats`` runs, all paths timed alternately. ``cache_dir``: where int8 finds or makes
    the model's artifact (as ``mode="int8"``)."""
    with torch.inference_mode(False), torch.no_grad():  # may be called from inside set_image
        return _measure(model, optimize, modes, repeats, cache_dir)


#: The variants a path may name after its mode (``"int8:torch"``, ``"openvino:bf16"``, ...).
VARIANTS = {"int8": ("torch", "onnxruntime", "openvino"), "openvino": ("f32", "bf16"), "onnx": ("encoder",)}


def check_path(path: str) -> str:
    """The canonical name of a measured path: a speed mode (:func:`check_mode`), optionally
    with one of its :data:`VARIANTS` (``"int8:onnxruntime"``, ``"openvino:bf16"``,
    ``"onnx:encoder"``).

    Raises:
        InputError: an unknown mode or variant.
    """
    name, _, variant = path.strip().partition(":")
    name = check_mode(name)
    if variant and variant.lower() not in VARIANTS.get(name, ()):
        known = ", ".join(f"{m}:{v}" for m, vs in VARIANTS.items() for v in vs)
        raise InputError(f"unknown variant '{variant}' of mode '{name}'", f"use one of {known}")
    return f"{name}:{variant.lower()}" if variant else name


def mode_options(mode: str, cache_dir=None) -> tuple[str, dict]:
    """``"int8:torch"`` → ``("int8", {"backend": "torch", ...})``; ``"openvino:bf16"`` →
    ``("openvino", {"precision": "bf16", ...})``: a measured path as ``optimize`` takes it."""
    name, _, variant = mode.partition(":")
    if name == "int8":
        return name, {"backend": variant or None, "cache_dir": cache_dir}
    if name == "openvino":
        return name, {"precision": variant or None, "cache_dir": cache_dir}  # None: measured (openvino_precision)
    if name == "onnx":  # "onnx:encoder": ONNX Runtime's encoder, pocketsam's decoder
        return name, {"encoder_only": variant == "encoder", "cache_dir": cache_dir}
    return name, {}


def _measure(model, optimize: Optimize, modes: list[str], repeats: int, cache_dir) -> dict[str, float]:
    engines = {"default": optimize(model, "default")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for mode in modes:
            name, options = mode_options(mode, cache_dir)
            engines[mode] = optimize(model, name, **options)
    size = model.img_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(model.device)
    times = time_encoders(engines, x, repeats)
    base = min(times["default"])
    return {m: base / min(ts) for m, ts in times.items() if m != "default"}


def time_encoders(engines: dict[str, nn.Module], x: torch.Tensor, repeats: int,
                  clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of ``repeats`` image-encoder calls on ``x`` per engine, after one warm-up call
    each, the engines taking turns (so a change in the machine's load hits all alike).
    ``clock``: ``time.perf_counter`` (wall) or ``time.process_time`` (this process's CPU)."""
    times: dict[str, list[float]] = {m: [] for m in engines}
    with torch.no_grad():
        for e in engines.values():
            e.image_encoder(x)
        for _ in range(repeats):
            for m, e in engines.items():
                t = clock()
                e.image_encoder(x)
                times[m].append(clock() - t)
    return times


def model_speedups(model, optimize: Optimize, modes: list[str], cache_dir: str | Path | None = None) -> dict[str, float]:
    """:func:`measure_speedups`, once per machine and model (cached by the weights' hash)."""
    path, key = _cache_path(cache_dir), _machine_key()
    sha = weights_sha256(model)[:24]
    cached = dict(_load(path).get(key, {}).get("speedups", {}).get(sha, {}))
    missing = [m for m in modes if m not in cached]
    if missing:
        measured = measure_speedups(model, optimize, missing, cache_dir=cache_dir)
        cached.update(measured)
        _store(path, key, "speedups", {sha: cached})
        _store(path, key, "machine", {"cpu": cpu_name(), "flags": relevant_flags(), "threads": torch.get_num_threads(),
                                      "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
                                      "workload": "the model's image encoder at its input size, best of 3"})
    return {m: float(cached[m]) for m in modes}


def int8_backend(model, optimize: Optimize, cache_dir: str | Path | None = None) -> str:
    """The faster int8 backend for ``model`` on this machine (measured once, cached):
    ``"torch"`` (oneDNN int8 linear layers) or ``"onnxruntime"``."""
    if not torch_int8_available():
        return "onnxruntime"
    s = model_speedups(model, optimize, ["int8:torch", "int8:onnxruntime"], cache_dir)
    return "torch" if s["int8:torch"] >= s["int8:onnxruntime"] else "onnxruntime"


def path_quality(model, optimize: Optimize, mode: str, cache_dir: str | Path | None = None) -> float:
    """Mask IoU of the path ``mode`` (``"bf16"``, ``"openvino:f32"``, ...) against
    ``default`` for ``model`` on a generated scene (once per model and machine, cached)."""
    path, key = _cache_path(cache_dir), _machine_key()
    entry = f"{weights_sha256(model)[:24]}:{mode}"
    cached = _load(path).get(key, {}).get("path_iou", {})
    if entry in cached:
        return float(cached[entry])
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        name, options = mode_options(mode, cache_dir)
        ref, test = optimize(model, "default"), optimize(model, name, **options)
        iou = mask_agreement(ref, test, [scene(model.img_size, seed=1)])["mask_iou_vs_fp32"]
    _store(path, key, "path_iou", {entry: iou})
    return iou


def openvino_precision(model, optimize: Optimize, cache_dir: str | Path | None = None) -> str:
    """What ``mode="openvino"`` runs in: ``"bf16"`` where OpenVINO has native bf16 kernels
    and a one-off measurement found them faster than its f32 with mask IoU >= the floor,
    else ``"f32"``."""
    if not openvino.native_bf16():
        return "f32"
    s = model_speedups(model, optimize, ["openvino:f32", "openvino:bf16"], cache_dir)
    if s["openvino:bf16"] > s["openvino:f32"] and path_quality(model, optimize, "openvino:bf16", cache_dir) >= IOU_FLOOR:
        return "bf16"
    return "f32"


def choose_fast(model, optimize: Optimize, cache_dir: str | Path | None = None) -> FastChoice:
    """The path ``fast`` runs for ``model`` on this machine."""
    shown = relevant_flags()
    notes: list[str] = []
    candidates: list[str] = []
    device = model.device
    if native_bf16(device):
        candidates.append("bf16")
    else:
        notes.append("no native bf16")
    if device.type == "cpu" and onnx_available():
        candidates.append("onnx:encoder")
    if device.type == "cpu" and os.environ.get(OPENVINO_ENV, "1") != "0" and openvino.available():
        candidates.append("openvino:f32")
        if openvino.native_bf16():
            candidates.append("openvino:bf16")
    art = model.info.int8
    if device.type == "cpu" and art is not None:
        iou = (art.meta.get("quality") or {}).get("mask_iou_vs_fp32")
        # without VNNI the int8 encoder runs with uint8 weights (same numbers, so the recorded
        # IoU holds); whether it is faster there is left to the measurement below
        if not isinstance(iou, float) or iou < IOU_FLOOR:
            notes.append(f"int8: its artifact's mask IoU {iou if iou is None else round(iou, 4)} < {IOU_FLOOR}")
        else:
            candidates.append("int8")
    if device.type != "cpu":  # speed on a GPU is not what the CPU micro-measurement says
        return FastChoice("bf16" if "bf16" in candidates else "default", f"{device.type} device", {}, shown)
    if not candidates:
        return FastChoice("default", "nothing faster on this CPU: " + "; ".join(notes), {}, shown)
    measured = [c for c in candidates if c != "int8"]
    if "int8" in candidates:
        if isinstance(art, openvino.OpenVINOArtifact):
            measured.append("int8:openvino")
        else:
            measured += ["int8:torch", "int8:onnxruntime"] if torch_int8_available() else ["int8:onnxruntime"]
    speedups = model_speedups(model, optimize, measured, cache_dir)
    for mode in sorted(speedups, key=lambda m: -speedups[m]):
        gain = speedups[mode]
        if gain < MIN_GAIN:
            break
        if mode.startswith("int8"):
            iou = float(art.meta["quality"]["mask_iou_vs_fp32"])
        else:
            iou = path_quality(model, optimize, mode, cache_dir)
            if iou < IOU_FLOOR:
                notes.append(f"{mode}: mask IoU {iou:.3f} < {IOU_FLOOR}")
                continue
        skipped = f"; {', '.join(notes)}" if notes else ""
        return FastChoice(mode, f"encoder {gain:.2f}x default in a one-off measurement of this model on this machine, "
                                f"mask IoU {iou:.3f} vs float32{skipped}; CPU flags {', '.join(shown) or 'none'}",
                          speedups, shown)
    best = ", ".join(f"{m} {g:.2f}x" for m, g in speedups.items())
    return FastChoice("default", f"nothing at least {MIN_GAIN}x faster with mask IoU >= {IOU_FLOOR} "
                                 f"({best}{'; ' + '; '.join(notes) if notes else ''})", speedups, shown)
