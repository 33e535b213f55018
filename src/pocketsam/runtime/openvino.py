"""OpenVINO as an execution path for the image encoder (optional extra ``pocketsam[openvino]``).

The input is the SAM-format ``encoder.onnx`` that pocketsam exports
(:func:`pocketsam.runtime.onnx.export_encoder` or
:func:`pocketsam.export.onnx_sam.export_encoder`): one input ``image`` of shape
(1, 3, S, S) float32 (resized with :class:`~pocketsam.preprocess.ResizeLongestSide`,
normalised and zero-padded by :meth:`Sam.preprocess <pocketsam.models.sam.Sam.preprocess>`),
one output, the image embedding (1, C, S/16, S/16), C = 256 for SAM-family models.

* :func:`compile_encoder` compiles it (or an OpenVINO model in memory) for the CPU in
  ``"f32"`` or ``"bf16"``. OpenVINO's own default on a CPU with native bf16 (AVX512-BF16,
  AMX) is bf16, so ``"f32"`` is always asked for explicitly; ``"bf16"`` is refused on CPUs
  without native bf16, where OpenVINO would emulate it slowly.
* :class:`OpenVINOImageEncoder` wraps a compiled encoder as an ``nn.Module`` with the
  contract of :class:`~pocketsam.runtime.onnx.OrtImageEncoder`: (B, 3, S, S) float
  tensor -> (B, C, S/16, S/16) float32 tensor on the input's device.
* :func:`quantize_encoder` runs NNCF post-training quantisation (transformer model type:
  int8 weights and activations for MatMul/Conv, SmoothQuant-style handling of outliers, the
  softmax and normalisations kept in float) calibrated on the user's images preprocessed
  exactly as the predictor does, measures the mask IoU against float32 and writes an
  artifact folder with :func:`save_artifact`.
* :func:`load_artifact` reads such a folder back safely and checks it (see below).

Artifact folder::

    OUT/
      pocketsam_openvino.json   format, version, SHA-256 and size of every file, the model
                                weights' SHA-256, how it was quantised, measured quality,
                                and a SHA-256 of these values themselves
      encoder.int8.xml          the quantised encoder, OpenVINO IR (graph, XML)
      encoder.int8.bin          its constants (weights, quantisation scales)
      model.safetensors         the float32 model (official layout): prompt encoder, mask
                                decoder (pocketsam's own decoder decodes the embedding) and
                                the float paths

Loading never executes code: JSON is parsed, safetensors is read as tensors, and the IR is
handed to OpenVINO as bytes *after* their SHA-256 matched the metadata (the very bytes that
were checked are the ones compiled, so a file swapped between check and load is not read).
The graph may only use operations of OpenVINO's standard opsets (no extension libraries are
ever registered), so an edited, truncated or foreign artifact is one clear
:class:`~pocketsam.errors.CheckpointError`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from pocketsam.errors import CheckpointError, InputError

__all__ = [
    "OpenVINOArtifact", "OpenVINOImageEncoder", "available", "compile_artifact", "compile_encoder",
    "decode_agreement", "embedding_mask_iou", "encoder_inputs", "load_artifact", "native_bf16",
    "predictor_input", "quantize_encoder", "save_artifact",
]

META_NAME = "pocketsam_openvino.json"
XML_NAME = "encoder.int8.xml"
BIN_NAME = "encoder.int8.bin"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "pocketsam-openvino-int8"
VERSION = 1
PRECISIONS = ("f32", "bf16")
#: IR layer versions a pocketsam artifact may use: OpenVINO's standard opsets (``opset1`` ...)
#: and its internal ones that NNCF/serialisation write (``internal``, ``ie_internal_opset``).
_ALLOWED_LAYER_VERSION = re.compile(r"^(opset\d+|internal|ie_internal_opset)$")


def _ov():
    try:
        import openvino as ov
    except ImportError as exc:
        raise InputError("the OpenVINO path needs the openvino package", "pip install 'pocketsam[openvino]'") from exc
    return ov


def available() -> bool:
    """Whether the ``openvino`` package can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports native bf16 kernels (AVX512-BF16 / AMX-BF16)."""
    ov = _ov()
    try:
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:  # pragma: no cover - no CPU plugin
        return False


def compile_encoder(onnx_path, precision: str = "f32", threads: int | None = None, config: dict | None = None):
    """Compile an encoder for OpenVINO's CPU plugin.

    Args:
        onnx_path: a SAM-format ``encoder.onnx`` (path), an IR ``.xml`` (path), or an
            ``openvino.Model`` in memory (e.g. :func:`quantize_encoder`'s result).
        precision: ``"f32"`` or ``"bf16"`` (``INFERENCE_PRECISION_HINT``): the precision of
            every layer that is not int8. ``"bf16"`` only on CPUs with native bf16.
        threads: ``INFERENCE_NUM_THREADS`` (default: torch's intra-op thread count, so that
            OpenVINO and torch paths are compared on the same cores).
        config: more CPU plugin properties (e.g. ``{"PERF_COUNT": True}`` for per-layer
            timings from ``request.get_profiling_info()``).
    Returns:
        an ``openvino.CompiledModel``: input (1, 3, S, S) float32 -> output (1, C, S/16, S/16).
    Raises:
        InputError: unknown precision, bf16 without native support, openvino missing.
    """
    ov = _ov()
    if precision not in PRECISIONS:
        raise InputError(f"unknown OpenVINO precision '{precision}'", f"use one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and not native_bf16():
        raise InputError("this CPU has no native bf16 (AVX512-BF16 / AMX)", "use precision='f32'")
    core = ov.Core()
    model = core.read_model(str(onnx_path)) if isinstance(onnx_path, (str, Path)) else onnx_path
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
        # one stream, latency hint: one image at a time on all the given threads, as pocketsam runs
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        **(config or {}),
    }
    return core.compile_model(model, "CPU", config)


class OpenVINOImageEncoder(nn.Module):
    """A compiled OpenVINO encoder as pocketsam's image encoder.

    ``forward``: (B, 3, S, S) float tensor (preprocessed) -> (B, C, S/16, S/16) float32 on
    the input's device. The exported graph has batch 1, so a batch runs image by image.
    """

    def __init__(self, compiled, img_size: int, precision: str = "f32") -> None:
        super().__init__()
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.img_size = img_size
        self.precision = precision

    @classmethod
    def from_onnx(cls, onnx_path, img_size: int, precision: str = "f32", threads: int | None = None):
        return cls(compile_encoder(onnx_path, precision, threads), img_size, precision)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(x.shape[0]):
            a = np.ascontiguousarray(x[i:i + 1].detach().cpu().float().numpy())
            res = self.request.infer({0: a})
            # copy: the request's output buffer is reused by the next call
            outs.append(torch.from_numpy(np.array(res[0], dtype=np.float32, copy=True)))
        return torch.cat(outs).to(x.device)


# --------------------------------------------------------------------------- calibration
def encoder_inputs(model, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``images`` (H×W×3 uint8 RGB) as the predictor feeds the encoder: long side resized to
    ``model.img_size`` (:class:`~pocketsam.preprocess.ResizeLongestSide`), normalised and
    padded (:meth:`Sam.preprocess`). Each (1, 3, S, S) float32."""
    from pocketsam.preprocess import ResizeLongestSide

    transform = ResizeLongestSide(model.img_size)
    out = []
    with torch.inference_mode():
        for image in images:
            x = torch.as_tensor(np.array(transform.apply_image(image))).permute(2, 0, 1)[None].float()
            out.append(np.ascontiguousarray(model.preprocess(x.to(model.device)).cpu().numpy()))
    return out


def embedding_mask_iou(model, embed: Callable[[torch.Tensor], torch.Tensor], images: Sequence[np.ndarray],
                       points_only: bool = False) -> dict:
    """Mask IoU of masks decoded from ``embed``'s embeddings against float32's, both decoded by
    pocketsam's own (float32, ``default``) decoder, so only the encoder differs.

    Args:
        embed: preprocessed input (1, 3, S, S) -> embedding (1, C, S/16, S/16).
        points_only: only the 3×3 grid of single clicks (else the bench's whole prompt set:
            9 points, 3 boxes, 1 point+box; :func:`pocketsam.speed.agreement.accuracy_prompts`).
    Returns:
        ``mask_iou_vs_fp32`` (mean over prompts and their 3 masks), per kind
        ``mask_iou_point`` / ``_box`` / ``_point+box``, ``per_image`` (mean per image),
        ``embedding_rel_l2``.
    """
    from pocketsam.predictor import SamPredictor

    ref = SamPredictor(model, mode="default")
    kinds: dict[str, list[float]] = {"point": [], "box": [], "point+box": []}
    per_image, errs = [], []
    for image in images:
        ref.set_image(image)
        fp32 = ref.features
        with torch.inference_mode():
            test = embed(predictor_input(ref, image)).float()
        errs.append(float((test - fp32).norm() / fp32.norm()))
        found = decode_agreement(ref, fp32, test, image.shape[:2], points_only)
        for k, v in found.items():
            kinds[k] += v
        per_image.append(float(np.mean([v for vs in found.values() for v in vs])))
        ref.features = fp32
    every = [v for vs in kinds.values() for v in vs]
    return {"mask_iou_vs_fp32": float(np.mean(every)),
            **{f"mask_iou_{k}": float(np.mean(v)) for k, v in kinds.items() if v},
            "per_image": per_image, "embedding_rel_l2": float(np.mean(errs)), "images": len(images)}


def predictor_input(predictor, image: np.ndarray) -> torch.Tensor:
    """The encoder input (1, 3, S, S) that ``predictor.set_image(image)`` computes."""
    x = torch.as_tensor(np.array(predictor.transform.apply_image(image))).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        return predictor.engine.preprocess(x.to(predictor.device))


def decode_agreement(predictor, fp32: torch.Tensor, test: torch.Tensor, hw: tuple[int, int],
                     points_only: bool = False) -> dict[str, list[float]]:
    """IoU of each mask decoded from embedding ``test`` against the same prompt's mask from
    ``fp32`` (both (1, C, S/16, S/16)), by prompt kind, with ``predictor``'s decoder; the
    predictor must have had the image set (its size and transform are used). Leaves
    ``predictor.features`` = ``test``."""
    from pocketsam.runtime.agreement import accuracy_prompts

    prompts = accuracy_prompts(*hw)
    if points_only:
        prompts = [p for p in prompts if "box" not in p]
    kinds: dict[str, list[float]] = {}
    for kw in prompts:
        predictor.features = fp32
        a = predictor.predict(**kw)[0]
        predictor.features = test
        b = predictor.predict(**kw)[0]
        kind = "point+box" if "box" in kw and "point_coords" in kw else ("box" if "box" in kw else "point")
        for m, n in zip(a, b):
            union = (m | n).sum()
            kinds.setdefault(kind, []).append(float((m & n).sum() / union) if union else 1.0)
    return kinds


# --------------------------------------------------------------------------- int8 artifact
@dataclass
class OpenVINOArtifact:
    """A checked artifact: its folder, its metadata, and the verified IR bytes."""

    folder: Path
    meta: dict = field(default_factory=dict)
    xml: bytes = b""
    weights: bytes = b""

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS_NAME

    @property
    def img_size(self) -> int:
        return int(self.meta["img_size"])

    def describe(self) -> str:
        iou = self.meta.get("quality", {}).get("mask_iou_vs_fp32")
        return (f"OpenVINO NNCF int8 encoder from '{self.folder}'"
                + (f" (mask IoU vs float32 {iou:.3f} on its calibration images)" if isinstance(iou, float) else ""))

    def read_model(self):
        """The verified IR as an ``openvino.Model`` (from the checked bytes, not the files)."""
        ov = _ov()
        try:
            return ov.Core().read_model(self.xml.decode("utf-8"), ov.Tensor(np.frombuffer(self.weights, np.uint8).copy()))
        except (RuntimeError, UnicodeDecodeError) as exc:
            raise _damaged(self.folder, f"OpenVINO cannot read its IR ({type(exc).__name__})") from None


def _damaged(folder: Path, what: str) -> CheckpointError:
    return CheckpointError(f"OpenVINO int8 artifact '{folder}' is damaged: {what}",
                           "re-create it with quantize_encoder (pocketsam quantize --backend openvino)")


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
    import tempfile

    import nncf

    from pocketsam.checkpoints import weights_sha256

    ov = _ov()
    if not images:
        raise InputError("no calibration images", "pass at least one image")
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    if preset not in presets:
        raise InputError(f"unknown NNCF preset '{preset}'", f"use one of {', '.join(presets)}")
    say = log or (lambda msg: None)
    start = time.perf_counter()
    model = model.eval()
    feeds = encoder_inputs(model, images)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"'{out}' is a file", "pass a folder for the OpenVINO int8 artifact")
    with tempfile.TemporaryDirectory(prefix="pocketsam-ov-") as work:
        if onnx_path is None:
            from pocketsam.runtime.onnx import export_encoder

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
            quality = embedding_mask_iou(model, enc, images[:measure])
            quality["measured_on"] = "calibration images, bench prompts (9 points, 3 boxes, 1 point+box)"
            quality["precision"] = "int8 + f32"
        meta = {
            "img_size": int(model.img_size), "model_sha256": weights_sha256(model), "source": source,
            "versions": _versions(),
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
    from pocketsam.checkpoints import save_checkpoint, weights_sha256
    from pocketsam.io import replace_files_together, sha256_file, write_json_atomic

    ov = _ov()
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
        full.setdefault("versions", _versions())
        full["meta_sha256"] = _meta_digest(full)
        write_json_atomic(full, stage / META_NAME)
    return load_artifact(out)


def load_artifact(path, verify: bool = True) -> OpenVINOArtifact:
    """Read and check an artifact folder (or its ``pocketsam_openvino.json``).

    Raises:
        CheckpointError: not an artifact, unreadable or edited metadata, a missing file, a
            checksum mismatch, or an IR with operations outside OpenVINO's standard opsets.
    """
    import hashlib
    import json

    p = Path(path)
    folder = p.parent if p.name == META_NAME and p.is_file() else p
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        raise CheckpointError(f"'{folder}' is not an OpenVINO int8 artifact (no {META_NAME})",
                              "pass the folder written by quantize_encoder")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(folder, f"{META_NAME} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _damaged(folder, f"{META_NAME} does not describe a {FORMAT} artifact")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"OpenVINO int8 artifact '{folder}' has format version {meta.get('version')!r}; "
                              f"this pocketsam reads version {VERSION}", "re-create it with this pocketsam")
    files = meta.get("files")
    if not isinstance(files, dict) or set(files) != {XML_NAME, BIN_NAME, WEIGHTS_NAME}:
        raise _damaged(folder, f"{META_NAME} does not list {XML_NAME}, {BIN_NAME} and {WEIGHTS_NAME}")
    size = meta.get("img_size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or size % 16:
        raise _damaged(folder, f"{META_NAME} has no valid input size")
    if not isinstance(meta.get("model_sha256"), str):
        raise _damaged(folder, f"{META_NAME} has no model weights SHA-256")
    if meta.get("meta_sha256") != _meta_digest(meta):
        raise _damaged(folder, f"{META_NAME} was edited (its values do not match its own checksum)")
    art = OpenVINOArtifact(folder, meta)
    if not verify:
        return art
    blobs = {}
    for name in (XML_NAME, BIN_NAME, WEIGHTS_NAME):
        f, info = folder / name, files[name]
        if not f.is_file():
            raise _damaged(folder, f"{name} is missing")
        if name == WEIGHTS_NAME:  # read by build_sam later; hashed here in chunks
            from pocketsam.io import sha256_file

            ok = isinstance(info, dict) and sha256_file(f) == info.get("sha256")
        else:  # the IR: keep the checked bytes, which are what OpenVINO will read
            blobs[name] = f.read_bytes()
            ok = isinstance(info, dict) and hashlib.sha256(blobs[name]).hexdigest() == info.get("sha256")
        if not ok:
            raise _damaged(folder, f"{name} does not match the checksum recorded in {META_NAME}")
    art.xml, art.weights = blobs[XML_NAME], blobs[BIN_NAME]
    _check_ir(art.xml, folder)
    return art


def _meta_digest(meta: dict) -> str:
    """SHA-256 of the metadata's values (all but this digest, canonical JSON): an edited
    input size or quality figure is caught like an edited binary."""
    import hashlib
    import json

    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_ir(xml: bytes, folder: Path) -> None:
    """Every layer of the IR is a standard OpenVINO operation (an extension would need a
    library that pocketsam never registers; refusing here gives a clear error instead)."""
    import xml.etree.ElementTree as ET

    if b"<!DOCTYPE" in xml or b"<!ENTITY" in xml:  # no entity expansion in untrusted XML
        raise _damaged(folder, f"{XML_NAME} declares a DTD, which OpenVINO IR never has")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        raise _damaged(folder, f"{XML_NAME} is not well-formed XML") from None
    if root.tag != "net":
        raise _damaged(folder, f"{XML_NAME} is not an OpenVINO IR")
    bad = sorted({layer.get("version", "") for layer in root.iter("layer")
                  if not _ALLOWED_LAYER_VERSION.match(layer.get("version", ""))})
    if bad:
        raise _damaged(folder, f"{XML_NAME} uses operation set(s) {', '.join(map(repr, bad))}, which pocketsam never writes")


def compile_artifact(art: OpenVINOArtifact, precision: str = "f32", threads: int | None = None) -> OpenVINOImageEncoder:
    """The artifact's int8 encoder, compiled; ``precision`` is that of its non-int8 layers."""
    return OpenVINOImageEncoder(compile_encoder(art.read_model(), precision, threads), art.img_size, precision)


def _versions() -> dict:
    import pocketsam

    ov = _ov()
    v = {"pocketsam": pocketsam.__version__, "torch": torch.__version__, "openvino": ov.__version__}
    try:
        import nncf

        v["nncf"] = nncf.__version__
    except ImportError:  # pragma: no cover
        pass
    return v
