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
* :func:`openvino_model` makes the inference copy of ``mode="openvino"`` (the encoder on
  OpenVINO, pocketsam's own decoder, which is faster for SAM's small decoder).
* The int8 artifact is written by :mod:`pocketsam.quant.openvino` (NNCF post-training
  quantisation, ``pocketsam quantize --backend openvino``); this module reads and runs it.
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

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pocketsam.errors import CheckpointError, InputError
from pocketsam.io import sha256_file
from pocketsam.models.info import SpeedPath
from pocketsam.runtime.artifact import damaged_artifact, read_sealed_metadata
from pocketsam.runtime.decoder import fast_mask_decoder
from pocketsam.runtime.onnx import export_onnx
from pocketsam.version import __version__

__all__ = [
    "OpenVINOArtifact", "OpenVINOImageEncoder", "available", "compile_artifact", "compile_encoder", "is_artifact",
    "load_artifact", "native_bf16", "openvino_model",
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


def import_openvino():
    try:
        import openvino as ov  # optional dependency (the [openvino] extra)
    except ImportError as exc:
        raise InputError("the OpenVINO path needs the openvino package", "pip install 'pocketsam[openvino]'") from exc
    return ov


def available() -> bool:
    """Whether the ``openvino`` package can be imported."""
    try:
        import openvino  # noqa: F401  (optional dependency)
    except ImportError:
        return False
    return True


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports native bf16 kernels (AVX512-BF16 / AMX-BF16)."""
    ov = import_openvino()
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
    ov = import_openvino()
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
        iou = (self.meta.get("quality") or {}).get("mask_iou_vs_fp32")
        return (f"OpenVINO NNCF int8 encoder from '{self.folder}'"
                + (f" (mask IoU vs float32 {iou:.3f} on its calibration images)" if isinstance(iou, float) else ""))

    def read_model(self):
        """The verified IR as an ``openvino.Model`` (from the checked bytes, not the files)."""
        ov = import_openvino()
        try:
            return ov.Core().read_model(self.xml.decode("utf-8"), ov.Tensor(np.frombuffer(self.weights, np.uint8).copy()))
        except (RuntimeError, UnicodeDecodeError) as exc:
            raise _damaged(self.folder, f"OpenVINO cannot read its IR ({type(exc).__name__})") from None


def _damaged(folder: Path, why: str) -> CheckpointError:
    return damaged_artifact(folder, why, "OpenVINO int8 artifact", "`pocketsam quantize --backend openvino`")


def load_artifact(path, verify: bool = True) -> OpenVINOArtifact:
    """Read and check an artifact folder (or its ``pocketsam_openvino.json``).

    Raises:
        CheckpointError: not an artifact, unreadable or edited metadata, a missing file, a
            checksum mismatch, or an IR with operations outside OpenVINO's standard opsets.
    """
    folder, meta = read_sealed_metadata(path, META_NAME, FORMAT, VERSION, (XML_NAME, BIN_NAME, WEIGHTS_NAME),
                                        "OpenVINO int8 artifact", "`pocketsam quantize --backend openvino`")
    if not isinstance(meta.get("model_sha256"), str):
        raise _damaged(folder, f"{META_NAME} has no model weights SHA-256")
    art = OpenVINOArtifact(folder, meta)
    if not verify:
        return art
    blobs = {}
    for name in (XML_NAME, BIN_NAME, WEIGHTS_NAME):
        f, info = folder / name, meta["files"][name]
        if not f.is_file():
            raise _damaged(folder, f"{name} is missing")
        if name == WEIGHTS_NAME:  # read by build_sam later; hashed here in chunks
            ok = isinstance(info, dict) and sha256_file(f) == info.get("sha256")
        else:  # the IR: keep the checked bytes, which are what OpenVINO will read
            blobs[name] = f.read_bytes()
            ok = isinstance(info, dict) and hashlib.sha256(blobs[name]).hexdigest() == info.get("sha256")
        if not ok:
            raise _damaged(folder, f"{name} does not match the checksum recorded in {META_NAME}")
    art.xml, art.weights = blobs[XML_NAME], blobs[BIN_NAME]
    _check_ir(art.xml, folder)
    return art


def _check_ir(xml: bytes, folder: Path) -> None:
    """Every layer of the IR is a standard OpenVINO operation (an extension would need a
    library that pocketsam never registers; refusing here gives a clear error instead)."""
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


def versions() -> dict:
    """The versions an artifact records (pocketsam, torch, OpenVINO, NNCF)."""
    ov = import_openvino()
    v = {"pocketsam": __version__, "torch": torch.__version__, "openvino": ov.__version__}
    try:
        import nncf  # optional dependency (the [openvino] extra)

        v["nncf"] = nncf.__version__
    except ImportError:  # pragma: no cover
        pass
    return v


def is_artifact(path) -> bool:
    """Whether ``path`` is an OpenVINO int8 artifact folder (or its metadata file)."""
    p = Path(path)
    return (p.is_dir() and (p / META_NAME).is_file()) or (p.name == META_NAME and p.is_file())


def openvino_model(model: nn.Module, fast: nn.Module, precision: str = "f32", threads: int | None = None,
                   cache_dir=None) -> nn.Module:
    """``fast`` (an inference copy of ``model``) with its image encoder on OpenVINO in
    ``precision`` (the encoder exported once per model to ONNX, cached like ``mode="onnx"``)
    and pocketsam's fast decoder."""
    if fast.device.type != "cpu":
        raise InputError("the OpenVINO path runs on CPU", "move the model to CPU")
    encoder_path, _ = export_onnx(model, cache_dir)
    fast.image_encoder = OpenVINOImageEncoder.from_onnx(encoder_path, fast.img_size, precision, threads)
    fast.mask_decoder = fast_mask_decoder(fast.mask_decoder)
    fast.info = replace(fast.info, speed=SpeedPath("openvino", f"OpenVINO {precision} encoder"))
    return fast
