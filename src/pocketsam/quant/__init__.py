"""Post-training 8-bit quantisation (TinySAM's "Q-TinySAM", W8A8) with real int8 kernels.

:func:`quantize_model` / :func:`quantize_checkpoint` (CLI: ``pocketsam quantize CKPT --calib
DIR --out OUT``) write an :mod:`int8 artifact <pocketsam.runtime.artifact>`: the float32 model,
the image encoder as a static int8 QDQ ONNX model, the calibrated ranges for torch's int8
kernels, and JSON metadata with checksums. ``build_sam(checkpoint=OUT)`` loads it (no pickle,
no code) and ``SamPredictor(sam)`` then runs ``mode="int8"``: the encoder's linear layers on
torch's oneDNN int8 kernels (:mod:`pocketsam.quant.torch_int8`) or ONNX Runtime's ``QGemm``
(:mod:`pocketsam.quant.onnx_int8`), whichever a one-off measurement found faster for the
model on the machine; the float32 fast decoder for prompts.

* **Weights:** per-channel symmetric int8.
* **Activations:** per-tensor uint8, calibrated on a few images; every range is chosen by a
  clipping search against the squared error of the output of the layer that reads it
  (:mod:`pocketsam.runtime.qnumerics`).
* **What stays float32** (each decided by measurement; README, "Speed modes"): the
  convolutions (int8 convolutions multiplied the embedding error by ~12 on the bundled
  model for no measurable speed), attention's two activation-by-activation products and the
  softmax (post-softmax kept in higher precision: quantising them was slower and no more
  accurate), the first and last linear layer (lower error at ~1 % of the encoder's time),
  and the mask decoder (ONNX Runtime's int8 decoder measured slower than the re-associated
  float32 one). **Post-GELU** activations are uint8 with the searched range (no runtime
  here has twin-uniform kernels); on torch they never exist in float32 (``fc1`` writes them
  as uint8).
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from pocketsam.checkpoints import save_checkpoint, weights_sha256
from pocketsam.errors import InputError
from pocketsam.io import (
    IMAGE_SUFFIXES,
    cache_root,
    list_images,
    load_image,
    replace_files_together,
    sha256_file,
    write_json_atomic,
)
from pocketsam.preprocess import Preprocess
from pocketsam.quant.onnx_int8 import OP_TYPES, QUANT_OPSET, calibrate, make_plan, quantize_onnx, simplify
from pocketsam.quant.torch_int8 import calibrate_torch, linear_sites
from pocketsam.runtime import optimize
from pocketsam.runtime.agreement import mask_agreement, scene
from pocketsam.runtime.artifact import (
    ENCODER_NAME,
    FORMAT,
    META_NAME,
    SEAL_KEY,
    VERSION,
    WEIGHTS_NAME,
    Int8Artifact,
    is_artifact,
    load_artifact,
    seal,
)
from pocketsam.runtime.fold import inference_copy
from pocketsam.runtime.int8_torch import available as torch_int8_available
from pocketsam.runtime.load import build_sam
from pocketsam.runtime.onnx import export_encoder
from pocketsam.runtime.qnumerics import ALPHAS
from pocketsam.version import __version__

__all__ = [
    "Int8Artifact", "artifact_for", "calibration_images", "is_artifact", "load_artifact", "measure_quality",
    "quantize_checkpoint", "quantize_model", "synthetic_images",
]

FLOAT_LAYER_CHOICES = ("first", "last")


def _inputs(model, images: Iterable[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The encoder inputs (resized, normalised, padded) for ``images``."""
    pre = Preprocess.for_model(model)
    return [{"image": np.ascontiguousarray(pre.image(image).numpy())} for image in images]


def calibration_images(folder: str | Path, num_images: int = 32) -> tuple[list[np.ndarray], list[str]]:
    """Up to ``num_images`` images of ``folder`` (sorted by name), loaded as RGB.

    Raises:
        InputError: the folder does not exist or holds no image.
    """
    p = Path(folder)
    if not p.is_dir():
        raise InputError(f"calibration folder '{p}' does not exist" if not p.exists()
                         else f"calibration folder '{p}' is not a folder", "pass a folder of images with --calib")
    if num_images < 1:
        raise InputError(f"--num-images must be at least 1, got {num_images}")
    files = list_images(p)[:num_images]
    if not files:
        raise InputError(f"calibration folder '{p}' holds no images",
                         f"put a few images like the ones you will segment there ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [load_image(f) for f in files], [f.name for f in files]


def synthetic_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` scenes of pocketsam's generator (deterministic), for calibration without images."""
    return [scene(size, seed, i) for i in range(n)]


def _float_nodes(plan, float_layers: Sequence[str]) -> list[str]:
    bad = [f for f in float_layers if f not in FLOAT_LAYER_CHOICES]
    if bad:
        raise InputError(f"unknown float layer choice(s) {', '.join(bad)}", f"use {' / '.join(FLOAT_LAYER_CHOICES)}")
    nodes: list[str] = []
    if "first" in float_layers:
        nodes += plan.first
    if "last" in float_layers:
        nodes += plan.last
    return nodes


def quantize_model(
    model,
    images: Sequence[np.ndarray],
    out: str | Path,
    *,
    search: bool = True,
    int8_layers: str = "linear",
    float_layers: Sequence[str] = ("first", "last"),
    threads: int | None = None,
    measure: int = 4,
    image_names: Sequence[str] | None = None,
    source: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Int8Artifact:
    """Quantise ``model``'s image encoder to int8 and write the artifact folder ``out``.

    Args:
        images: calibration images (H×W×3 uint8 RGB); a few suffice (TinySAM uses 8).
        search: clipping-range search (else plain min/max ranges).
        int8_layers: ``"linear"`` (the encoder's linear layers; its convolutions stay
            float32) or ``"all"`` (convolutions too). See the module docstring for why
            ``"linear"`` is the default.
        float_layers: keep the ``"first"`` and/or ``"last"`` quantisable layer in float32.
        measure: images (of ``images``) on which to record the mask IoU against float32.
        source: where the weights came from (recorded in the metadata).
    Returns:
        the checked artifact (as :func:`load_artifact` returns it).
    """
    if not images:
        raise InputError("no calibration images", "pass at least one image")
    if int8_layers not in OP_TYPES:
        raise InputError(f"unknown int8_layers '{int8_layers}'", f"use one of {', '.join(OP_TYPES)}")
    op_types = OP_TYPES[int8_layers]
    model = model.eval()
    say = log or (lambda msg: None)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pocketsam-quant-") as work:
        work = Path(work)
        say("exporting the float32 encoder to ONNX")
        simple = simplify(export_encoder(model, work / "encoder.fp32.onnx", QUANT_OPSET), work / "encoder.fp32.basic.onnx")
        import onnx  # optional dependency (the [onnx] extra): only quantising needs it

        plan = make_plan(onnx.load(str(simple)), op_types)
        feeds = _inputs(model, images)
        say(f"calibrating on {len(feeds)} image(s), {len(plan.tensors)} activations, "
            f"{'with' if search else 'without'} the clipping-range search")
        ranges, report = calibrate(simple, feeds, plan=plan, search=search, threads=threads, log=say)
        excluded = _float_nodes(plan, float_layers)
        # the torch backend quantises linear layers only: an "all" artifact runs on ONNX Runtime
        torch_part = _torch_calibration(model, feeds, search, float_layers, say) if int8_layers == "linear" else None
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise InputError(f"--out '{out}' is a file", "pass a folder for the int8 artifact")
        with replace_files_together(out, last=(META_NAME,),
                                    stale=lambda n: n in (WEIGHTS_NAME, ENCODER_NAME, META_NAME)) as stage:
            say("writing the int8 encoder")
            quantize_onnx(simple, stage / ENCODER_NAME, ranges, excluded, op_types)
            save_checkpoint(model, stage / WEIGHTS_NAME)
            searched = list(report.values())
            meta = {
                "format": FORMAT, "version": VERSION, "img_size": int(model.img_size),
                "model_sha256": weights_sha256(model), "source": source,
                "files": {n: {"sha256": sha256_file(stage / n), "bytes": (stage / n).stat().st_size}
                          for n in (WEIGHTS_NAME, ENCODER_NAME)},
                "versions": _versions(),
                "quantization": {
                    "encoder": "static int8 QDQ (ONNX Runtime): per-channel symmetric int8 weights, per-tensor "
                               "asymmetric uint8 activations",
                    "int8_layers": int8_layers, "quantized_ops": list(op_types),
                    "float32": ["attention MatMul (q·k, softmax·v)", "softmax", "LayerNorm", "GELU", "residual adds"]
                               + (["convolutions"] if "Conv" not in op_types else [])
                               + [f"{f} quantisable layer" for f in float_layers],
                    "float_nodes": excluded,
                    "decoder": "float32 (the re-associated fast decoder)",
                    "opset": QUANT_OPSET,
                },
                "calibration": {
                    "images": len(images), "image_names": list(image_names or []),
                    "range_search": (f"clipping search: alpha * [min, max], alpha in {list(ALPHAS)}, "
                                     "by the squared error of the reading layer's output (int8 weights, uint8 input "
                                     "vs float32)") if search else "min/max",
                    "tensors": len(ranges), "searched": len(searched),
                    "mean_rel_err_minmax": float(np.mean([r["rel_err_minmax"] for r in searched])) if searched else None,
                    "mean_rel_err_searched": float(np.mean([r["rel_err_searched"] for r in searched])) if searched else None,
                    "clipped": sum(r["alpha"] < 1 for r in searched),
                    "per_tensor": report,
                },
                "torch": torch_part,
                "seconds": None,
            }
            if measure:
                say(f"measuring mask IoU against float32 on {min(measure, len(images))} calibration image(s)")
                backend = "torch" if torch_int8_available() and torch_part else "onnxruntime"
                meta["quality"] = measure_quality(model, Int8Artifact(stage, meta), images[:measure], backend=backend)
                meta["quality"]["backend"] = backend
                meta["quality"]["measured_on"] = "calibration images, bench prompts (9 points, 3 boxes, 1 point+box)"
            meta["seconds"] = round(time.perf_counter() - start, 1)
            meta[SEAL_KEY] = seal(meta)
            write_json_atomic(meta, stage / META_NAME)
    say(f"wrote {out} in {time.perf_counter() - start:.0f} s")
    return load_artifact(out)


def _torch_calibration(model, feeds, search: bool, float_layers: Sequence[str], say) -> dict:
    """Ranges for the torch (oneDNN) backend: the same layers, hooked in the ``default``
    copy (:mod:`pocketsam.quant.torch_int8`)."""

    say("calibrating the torch (oneDNN int8) backend's linear layers")
    encoder = optimize(model, "default").image_encoder
    ranges, report = calibrate_torch(encoder, [torch.from_numpy(f["image"]) for f in feeds], search)
    names = [n for n, _, _ in linear_sites(encoder)]
    keep = ([names[0]] if "first" in float_layers and names else []) + ([names[-1]] if "last" in float_layers and names else [])
    return {"ranges": ranges, "float": keep,
            "mean_rel_err_minmax": float(np.mean([r["rel_err_minmax"] for r in report.values()])) if report else None,
            "mean_rel_err_searched": float(np.mean([r["rel_err_searched"] for r in report.values()])) if report else None}


def _versions() -> dict:
    import onnxruntime  # the [onnx] extra

    return {"pocketsam": __version__, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def quantize_checkpoint(checkpoint: str | Path | None, calib: str | Path, out: str | Path, num_images: int = 32,
                        model_type: str | None = None, log: Callable[[str], None] | None = None,
                        **options) -> Int8Artifact:
    """:func:`quantize_model` for a checkpoint file (``None``: the bundled model) and a
    folder of calibration images."""
    images, names = calibration_images(calib, num_images)  # before the (slow) model load
    model = build_sam(model_type, checkpoint)
    if model.info.int8 is not None:
        raise InputError(f"'{checkpoint}' is already an int8 artifact",
                         f"quantize the float checkpoint it was made from (its {WEIGHTS_NAME} will do)")
    return quantize_model(model, images, out, image_names=names, source=str(checkpoint) if checkpoint else "bundled",
                          log=log, **options)


def artifact_for(model, cache_dir: str | Path | None = None, log: Callable[[str], None] | None = None,
                 num_images: int = 4):
    """``model`` with an int8 artifact to run ``mode="int8"``: itself if it was loaded from
    one (weights unchanged since), else a copy sharing its weights with an artifact made once
    per machine with :func:`synthetic_images` as calibration and cached under ``cache_dir``
    (default ``<cache root>/int8``), keyed by the weights' hash. For when no calibration
    images are at hand (benchmarks); ``pocketsam quantize --calib DIR`` is the way to make
    an artifact for real use."""
    return cached_artifact(
        model, Path(cache_dir or cache_root("int8")), is_artifact, load_artifact,
        lambda images, folder: quantize_model(model, images, folder, measure=0, source="auto (synthetic calibration)"),
        "int8", "pocketsam quantize CKPT --calib DIR --out OUT", log, num_images)


def cached_artifact(model, root: Path, is_art: Callable, load: Callable, make: Callable, what: str, command: str,
                    log: Callable[[str], None] | None = None, num_images: int = 4):
    """``model`` carrying its int8 artifact of this kind: its own where it was loaded from one
    (weights unchanged), else the one under ``root/<weights hash>`` (``load``), else one made
    there now by ``make(images, folder)`` from synthetic calibration scenes (the message
    says so, and that ``command`` makes one from the user's images)."""
    sha = weights_sha256(model)
    art = model.info.int8
    if art is not None and getattr(art, "model_sha256", None) == sha and is_art(art.folder):
        return model
    folder = root / sha[:24]
    art = None
    if is_art(folder):
        try:
            art = load(folder)
        except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt
            art = None
    if art is None:
        (log or (lambda m: print(m, file=sys.stderr)))(
            f"{what}: no calibrated artifact for this model; quantising it once with {num_images} synthetic scenes "
            f"(cached in {folder}; for your own images run `{command}`)")
        art = make(synthetic_images(num_images, model.img_size), folder)
    return with_artifact(model, art, sha)


def with_artifact(model, artifact: Int8Artifact, sha: str | None = None):
    """A copy of ``model`` (sharing its weights) that carries ``artifact`` as its int8 encoder."""
    artifact.model_sha256 = sha or weights_sha256(model)
    target = inference_copy(model)
    target.info = replace(model.info, int8=artifact)
    return target


def measure_quality(model, artifact: Int8Artifact, images: Sequence[np.ndarray], **speed_options) -> dict:
    """Mask agreement (:func:`pocketsam.runtime.agreement.mask_agreement`) of ``model``'s int8
    path with ``artifact`` (``speed_options`` such as ``backend``) against its float32 path."""
    with torch.no_grad():
        reference = optimize(model, "default")
        test = optimize(with_artifact(model, artifact), "int8", **speed_options)
        return mask_agreement(reference, test, images)
