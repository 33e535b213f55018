"""The benchmark harness behind ``pocketsam bench`` (and the scripts in ``bench/``): every
speed mode in its own subprocess, one table.

Columns:

* ``first s``   — first ``set_image`` (includes building the mode: folding, export, compile),
* ``enc ms``    — image encoder on one input at the model's size (median of ``repeats``),
* ``1pt ms``    — one point prompt, 3 masks, thresholded at the original image size,
* ``b64 ms/p``  — 64 single-point prompts in one batch, masks at original size, per prompt,
* ``grid s`` / ``hier s`` — everything mode (``SamAutomaticMaskGenerator`` /
  ``SamHierarchicalMaskGenerator``, ``points_per_side``) per image,
* ``peak MB``   — RSS high-water mark after the encoder and prompt timings,
* ``IoU``       — mean mask IoU against the float32 reference path on a fixed prompt set
  (a 3×3 point grid, three boxes and a point+box, 3 masks each) on every bench image.

``int8`` uses the checkpoint's int8 artifact (``pocketsam quantize`` output), else quantises
the model once with synthetic calibration (cached, :func:`pocketsam.runtime.artifact_for`);
``fast`` says below the table which path it chose. The header names the CPU's vector/matrix
flags that decide them.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pocketsam.checkpoints import default_checkpoint
from pocketsam.errors import InputError
from pocketsam.everything import SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator
from pocketsam.io import load_image
from pocketsam.platform import configure_threads, cpu_name, relevant_flags
from pocketsam.predictor import SamPredictor
from pocketsam.preprocess import Preprocess
from pocketsam.quant import artifact_for
from pocketsam.quant.openvino import openvino_artifact_for
from pocketsam.runtime.agreement import accuracy_prompts
from pocketsam.runtime.load import build_sam
from pocketsam.runtime.select import check_path, mode_options

DEFAULT_MODES = ("reference", "default", "bf16", "int8", "fast", "onnx", "openvino:f32", "openvino:bf16", "int8:openvino",
                 "compile")
"""Every path, the peers' included: ONNX Runtime (``onnx``: its encoder and decoder) and
OpenVINO (``openvino:f32`` / ``openvino:bf16``: its encoder, pocketsam's decoder;
``int8:openvino``: NNCF int8). A path whose package is missing gets an error row."""


@dataclass
class BenchSettings:
    """What one benchmark run measures."""

    checkpoint: str | None = None
    """A checkpoint path or name; ``None`` with no ``model_type``: the bundled model."""
    model_type: str | None = None
    modes: tuple[str, ...] = DEFAULT_MODES
    images: list[str] = field(default_factory=list)
    """Images to use (default: a synthetic scene)."""
    threads: int | None = None
    repeats: int = 3
    prompt_repeats: int = 10
    batch: int = 64
    points_per_side: int = 16
    """Everything-mode grid (0 skips the everything columns)."""
    timeout: float = 1800

    def checked(self) -> "BenchSettings":
        modes = tuple(check_path(m) for m in self.modes)
        if not modes:
            raise InputError("no modes given", f"e.g. --modes {','.join(DEFAULT_MODES)}")
        for img in self.images:
            if not Path(img).exists():
                raise InputError(f"image '{img}' does not exist")
        checkpoint = self.checkpoint
        if checkpoint is None and self.model_type is None:
            checkpoint = str(default_checkpoint())  # a clear error where there is no bundled model
        return BenchSettings(**{**asdict(self), "modes": modes, "checkpoint": checkpoint})


def run_benchmark(settings: BenchSettings, log=None) -> tuple[dict[str, dict], dict]:
    """Every mode of ``settings`` in its own subprocess (so peak RSS is per mode and one
    mode's caches or threads never colour another's numbers). Returns the results by mode
    and the machine's description."""
    settings = settings.checked()
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pocketsam-bench-") as tmp:
        order = settings.modes if "reference" in settings.modes else ("reference", *settings.modes)
        for mode in order:
            job = {
                "mode": mode, "checkpoint": settings.checkpoint, "model_type": settings.model_type,
                "images": settings.images, "threads": settings.threads, "repeats": settings.repeats,
                "prompt_repeats": settings.prompt_repeats, "batch": settings.batch,
                "points_per_side": settings.points_per_side,
                "masks_out": str(Path(tmp) / f"{mode}.npz"),
                "timing": mode in settings.modes,
            }
            say(f"[bench] {mode} ...")
            results[mode] = _run_worker(job, settings.timeout)
        ref_masks = Path(tmp) / "reference.npz"
        for mode in order:
            res = results[mode]
            if res.get("error") is None and ref_masks.exists():
                res["mask_iou"] = _mean_iou(Path(tmp) / f"{mode}.npz", ref_masks)
        if "reference" not in settings.modes:
            results.pop("reference", None)
    return results, machine()


def _run_worker(job: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pocketsam.benchmark", "--worker", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit status {proc.returncode}"}


def _mean_iou(path, ref_path) -> float | None:
    a, b = np.load(path), np.load(ref_path)
    ious = []
    for key in b.files:
        if key.endswith("_shape") or key not in a.files:
            continue
        shape = tuple(b[key + "_shape"])
        n = int(np.prod(shape))
        x = np.unpackbits(a[key])[:n].reshape(shape).astype(bool)
        y = np.unpackbits(b[key])[:n].reshape(shape).astype(bool)
        x, y = x.reshape(-1, *shape[-2:]), y.reshape(-1, *shape[-2:])
        inter = (x & y).sum((1, 2))
        union = (x | y).sum((1, 2))
        ious.extend(np.where(union > 0, inter / np.maximum(union, 1), 1.0).tolist())
    return float(np.mean(ious)) if ious else None


def machine() -> dict:
    """The machine a benchmark ran on (CPU, the flags that decide the fast paths, load)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "flags": relevant_flags(),
            "torch": torch.__version__,
            "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "loadavg": load, "time": time.strftime("%Y-%m-%d %H:%M:%S")}


COLUMNS = [
    ("mode", "mode", "{}"), ("first s", "first_set_image_s", "{:.2f}"), ("enc ms", "encoder_ms", "{:.0f}"),
    ("1pt ms", "point_ms", "{:.1f}"), ("b{batch} ms/p", "batched_ms_per_prompt", "{:.2f}"),
    ("grid s", "grid_s", "{:.2f}"), ("hier s", "hierarchical_s", "{:.2f}"),
    ("peak MB", "peak_rss_mb", "{:.0f}"), ("IoU", "mask_iou", "{:.4f}"),
]


def format_table(results: dict, meta: dict, points_per_side: int, batch: int = 64) -> str:
    heads = [h.format(batch=batch) for h, _, _ in COLUMNS]
    rows = []
    for mode, res in results.items():
        if res.get("error"):
            rows.append([mode] + ["-"] * (len(COLUMNS) - 2) + [f"error: {res['error'][:60]}"])
            continue
        row = []
        for _, key, fmt in COLUMNS:
            value = mode if key == "mode" else res.get(key)
            row.append("-" if value is None else fmt.format(value))
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    lines = [
        f"# {meta['cpu']} ({meta['cpu_capability']}; flags {' '.join(meta.get('flags') or []) or '-'}), "
        f"torch {meta['torch']}, "
        f"threads {next((r.get('threads') for r in results.values() if r.get('threads')), '?')}, "
        f"load {tuple(round(x, 2) for x in meta['loadavg']) if meta['loadavg'] else '?'}, "
        f"everything grid {points_per_side}²",
        "  ".join(h.rjust(w) for h, w in zip(heads, widths)),
    ]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines += [f"# {mode}: {res['path']}" for mode, res in results.items()
              if res.get("path") and res["path"] != mode and not res.get("error")]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- worker
def synthetic_image(h: int = 768, w: int = 1024, seed: int = 0):
    """A deterministic scene of overlapping flat-coloured rectangles and discs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(12):
        color = rng.integers(0, 256, 3)
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        r = rng.integers(min(h, w) // 12, min(h, w) // 4)
        if rng.random() < 0.5:
            sel = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        else:
            sel = (abs(yy - cy) < r) & (abs(xx - cx) < r * 1.5)
        img[sel] = color
    noise = rng.integers(-8, 9, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def worker(job: dict) -> dict:
    """One mode's measurements (run in a subprocess by :func:`run_benchmark`)."""
    warnings.simplefilter("ignore")
    threads = configure_threads(job["threads"])
    out: dict = {"mode": job["mode"], "threads": threads, "batch": job["batch"], "error": None}
    model = build_sam(job["model_type"], job["checkpoint"])
    name, options = mode_options(job["mode"])  # e.g. "int8:openvino", "openvino:bf16"
    if job["mode"] == "int8:openvino":
        model = openvino_artifact_for(model)
    elif name == "int8":
        model = artifact_for(model)  # its own artifact, else one made once (synthetic calibration)
    size = model.img_size
    if job["images"]:
        images = [load_image(p) for p in job["images"]]
    else:
        images = [synthetic_image(max(8, size * 3 // 4), size)]
    predictor = SamPredictor(model, mode=name, **options)

    start = time.perf_counter()
    predictor.set_image(images[0])
    out["first_set_image_s"] = time.perf_counter() - start
    out["path"] = predictor.speed_path

    masks: dict[str, np.ndarray] = {}
    for i, image in enumerate(images):
        predictor.set_image(image)
        h, w = image.shape[:2]
        for j, kw in enumerate(accuracy_prompts(h, w)):
            m, _, _ = predictor.predict(multimask_output=True, **kw)
            masks[f"{i}_{j}"] = np.packbits(m)
            masks[f"{i}_{j}_shape"] = np.array(m.shape)
    np.savez(job["masks_out"], **masks)
    if not job["timing"]:
        return out

    engine = predictor.engine
    with torch.inference_mode():
        x = Preprocess.for_model(model).image(images[0], model.device)
        engine.image_encoder(x)
        times = []
        for _ in range(max(1, job["repeats"])):
            t = time.perf_counter()
            engine.image_encoder(x)
            times.append(time.perf_counter() - t)
    out["encoder_ms"] = _median(times) * 1000
    out["encoder_min_ms"] = min(times) * 1000

    predictor.set_image(images[0])
    h, w = images[0].shape[:2]
    point = (np.array([[w * 0.4, h * 0.55]]), np.array([1]))
    predictor.predict(*point)
    times = []
    for _ in range(max(1, job["prompt_repeats"])):
        t = time.perf_counter()
        predictor.predict(*point)
        times.append(time.perf_counter() - t)
    out["point_ms"] = _median(times) * 1000
    out["point_min_ms"] = min(times) * 1000
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    b = job["batch"]
    if b > 0:
        rng = np.random.default_rng(0)
        pts = torch.as_tensor(rng.uniform(0, 1, (b, 1, 2)) * [w, h], dtype=torch.float)
        labels = torch.ones(b, 1, dtype=torch.int)
        predictor.predict_batch(pts[:2], labels[:2])
        times = []
        for _ in range(2):
            t = time.perf_counter()
            predictor.predict_batch(pts, labels)
            times.append(time.perf_counter() - t)
        out["batched_ms_per_prompt"] = min(times) * 1000 / b

    if job["points_per_side"] > 0:
        generators = {"grid_s": SamAutomaticMaskGenerator, "hierarchical_s": SamHierarchicalMaskGenerator}
        for key, cls in generators.items():
            gen = cls(predictor, points_per_side=job["points_per_side"])  # same mode and inference copy
            t = time.perf_counter()
            records = gen.generate(images[0])
            out[key] = time.perf_counter() - t
            out[key.replace("_s", "_masks")] = len(records)
    out["peak_rss_total_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _worker_main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    try:
        result = worker(job)
    except Exception as exc:  # reported in the table, not a traceback
        if os.environ.get("POCKETSAM_DEBUG"):
            raise
        result = {"mode": job.get("mode"), "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[1:]))
