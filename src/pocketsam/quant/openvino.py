"""OpenVINO int8 through NNCF post-training quantisation (``pocketsam quantize --backend
openvino``): the image encoder quantised by ``nncf.quantize`` (transformer model type: int8
weights and activations for MatMul / Conv, outliers handled SmoothQuant-style, softmax and
normalisations kept in float), calibrated on the user's images preprocessed exactly as the
predictor does, with the mask IoU against float32 measured and recorded. The artifact it
writes is read and run by :mod:`pocketsam.runtime.openvino`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from pocketsam.checkpoints import save_checkpoint, weights_sha256
from pocketsam.errors import InputError
from pocketsam.io import cache_root, replace_files_together, sha256_file, write_json_atomic
from pocketsam.preprocess import Preprocess
from pocketsam.quant import cached_artifact, calibration_images
from pocketsam.runtime import optimize
from pocketsam.runtime.load import build_sam
from pocketsam.runtime.agreement import embedding_agreement
from pocketsam.runtime.artifact import SEAL_KEY, seal
from pocketsam.runtime.onnx import export_encoder
from pocketsam.runtime.openvino import (
    BIN_NAME,
    FORMAT,
    META_NAME,
    VERSION,
    WEIGHTS_NAME,
    XML_NAME,
    OpenVINOArtifact,
    OpenVINOImageEncoder,
    compile_encoder,
    import_openvino,
    is_artifact,
    load_artifact,
    versions,
)


def quantize_encoder(model, images: Sequence[np.ndarray], out, *, onnx_path=None, threads: int | None = None,
                     measure: int = 4, preset: str = "mixed", image_names: Sequence[str] | None = None,
                     source: str | None = None, log: Callable[[str], None] | None = None) -> OpenVINOArtifact:
    """NNCF post-training int8 of ``model``'s image encoder, written as an artifact folder.

    Args:
        model: a :class:`~pocketsam.models.sam.Sam` (float32).
        images: calibration images, H×W×3 uint8 RGB, like the ones to be segmented (a few
            suffice; each is one calibration sample, preprocessed as the predictor does).
        out: the artifact folder (replaced as a whole, never partly).
        onnx_path: the model's SAM-format ``encoder.onnx`` if already exported (else exported
            to a temporary folder).
        measure: on this many of ``images``, record the mask IoU against float32 (pocketsam's
            decoder on both embeddings, bench prompt set); 0 skips it.
        preset: NNCF preset, ``"mixed"`` (symmetric weights, asymmetric activations: the
            transformer default) or ``"performance"`` (symmetric both).
    Returns:
        the artifact as :func:`load_artifact` reads it back.
    """
    import nncf  # optional dependency (the [openvino] extra)

    ov = import_openvino()
    if not images:
        raise InputError("no calibration images", "pass at least one image")
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    if preset not in presets:
        raise InputError(f"unknown NNCF preset '{preset}'", f"use one of {', '.join(presets)}")
    say = log or (lambda msg: None)
    start = time.perf_counter()
    model = model.eval()
    pre = Preprocess.for_model(model)
    feeds = [np.ascontiguousarray(pre.image(image).numpy()) for image in images]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"'{out}' is a file", "pass a folder for the OpenVINO int8 artifact")
    with tempfile.TemporaryDirectory(prefix="pocketsam-ov-") as work:
        if onnx_path is None:
            say("exporting the float32 encoder to ONNX")
            onnx_path = export_encoder(model, Path(work) / "encoder.onnx")
        float_model = ov.Core().read_model(str(onnx_path))
        say(f"NNCF post-training quantisation on {len(feeds)} calibration image(s)")
        quantized = nncf.quantize(
            float_model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, preset=presets[preset],
            subset_size=len(feeds),
        )
        quality = None
        if measure:
            say(f"measuring mask IoU against float32 on {min(measure, len(images))} calibration image(s)")
            enc = OpenVINOImageEncoder(compile_encoder(quantized, "f32", threads), model.img_size)
            with torch.no_grad():
                quality = embedding_agreement(optimize(model, "default"), enc, images[:measure])
            quality["measured_on"] = "calibration images, bench prompts (9 points, 3 boxes, 1 point+box)"
            quality["precision"] = "int8 + f32"
        meta = {
            "img_size": int(model.img_size), "model_sha256": weights_sha256(model), "source": source,
            "versions": versions(),
            "quantization": {
                "tool": "NNCF post-training quantisation (nncf.quantize)",
                "model_type": "transformer", "preset": preset,
                "int8": "MatMul / Conv inputs and weights as NNCF placed them (see the IR's FakeQuantize nodes)",
            },
            "calibration": {"images": len(images), "image_names": list(image_names or []),
                            "preprocessing": "ResizeLongestSide + Sam.preprocess (normalise, pad)"},
            "quality": quality,
            "seconds": round(time.perf_counter() - start, 1),
        }
        art = save_artifact(quantized, model, out, meta)
    say(f"wrote {out} in {time.perf_counter() - start:.0f} s")
    return art


def save_artifact(ov_model, model, out, meta: dict | None = None) -> OpenVINOArtifact:
    """Write ``ov_model`` (the int8 encoder, an ``openvino.Model``) and ``model``'s float
    weights to the artifact folder ``out`` with checksummed metadata. The folder's files are
    replaced together (never a mix of old and new); other files in it are kept.

    ``meta``: extra metadata (quality, calibration, ...); format, version, files and the
    model weights' SHA-256 are filled in here.
    """
    ov = import_openvino()
    out = Path(out)
    names = (XML_NAME, BIN_NAME, WEIGHTS_NAME)
    with replace_files_together(out, last=(META_NAME,), stale=lambda n: n in (*names, META_NAME)) as stage:
        # compress_to_fp16=False: the float constants that stay (biases, norms) keep float32
        ov.save_model(ov_model, str(stage / XML_NAME), compress_to_fp16=False)
        save_checkpoint(model, stage / WEIGHTS_NAME)
        full = dict(meta or {})
        full.update({
            "format": FORMAT, "version": VERSION, "img_size": int(model.img_size),
            "model_sha256": full.get("model_sha256") or weights_sha256(model),
            "files": {n: {"sha256": sha256_file(stage / n), "bytes": (stage / n).stat().st_size} for n in names},
        })
        full.setdefault("versions", versions())
        full[SEAL_KEY] = seal(full)
        write_json_atomic(full, stage / META_NAME)
    return load_artifact(out)




def quantize_checkpoint_openvino(checkpoint, calib, out, num_images: int = 32, model_type: str | None = None,
                                 log: Callable[[str], None] | None = None, **options) -> OpenVINOArtifact:
    """:func:`quantize_encoder` for a checkpoint (``None``: the bundled model) and a folder of
    calibration images (``pocketsam quantize --backend openvino``)."""
    images, names = calibration_images(calib, num_images)  # before the (slow) model load
    model = build_sam(model_type, checkpoint)
    if model.info.int8 is not None:
        raise InputError(f"'{checkpoint}' is already an int8 artifact", "quantize the float checkpoint it was made from")
    return quantize_encoder(model, images, out, image_names=names, source=str(checkpoint) if checkpoint else "bundled",
                            log=log, **options)


def openvino_artifact_for(model, cache_dir: str | Path | None = None, log: Callable[[str], None] | None = None,
                          num_images: int = 4):
    """:func:`pocketsam.quant.artifact_for` for NNCF int8 run by OpenVINO (benchmarks):
    ``model`` with an OpenVINO int8 artifact made once from synthetic scenes, cached under
    ``cache_dir`` (default ``<cache root>/int8-openvino``)."""
    return cached_artifact(
        model, Path(cache_dir or cache_root("int8-openvino")), is_artifact, load_artifact,
        lambda images, folder: quantize_encoder(model, images, folder, measure=0, source="auto (synthetic calibration)"),
        "int8 (OpenVINO)", "pocketsam quantize CKPT --calib DIR --out OUT --backend openvino", log, num_images)
