"""Opt-in inference backends: bfloat16 autocast, static int8 (torch oneDNN or ONNX Runtime), torch.compile.

Each function rewrites an inference copy made by :func:`pocketsam.runtime.optimize` in place.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import replace
from typing import Callable

import torch
from torch import nn

from pocketsam.checkpoints.fingerprint import weights_sha256
from pocketsam.errors import CheckpointError, InputError
from pocketsam.models.info import SpeedPath
from pocketsam.platform import native_bf16
from pocketsam.runtime import openvino
from pocketsam.runtime.decoder import fast_mask_decoder
from pocketsam.runtime.int8_onnx import runnable_encoder, saturates_int16
from pocketsam.runtime.int8_torch import available as torch_int8_available
from pocketsam.runtime.int8_torch import check_ranges, convert
from pocketsam.runtime.onnx import OrtImageEncoder
from pocketsam.runtime.select import int8_backend


class Autocast(nn.Module):
    """Run ``module`` under autocast to ``dtype``; floating outputs come back as float32."""

    def __init__(self, module: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype
        for name in ("img_size", "multimask_only", "num_mask_tokens", "transformer_dim"):
            if hasattr(module, name):
                setattr(self, name, getattr(module, name))

    def forward(self, *args, **kwargs):
        device_type = next(self.module.parameters()).device.type
        with torch.autocast(device_type, dtype=self.dtype):
            out = self.module(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.float() if o.is_floating_point() else o for o in out)
        return out.float()


class BF16Weights(nn.Module):
    """``module`` with its own copy of the weights cast to bfloat16 once (the source's weights
    are untouched): float input cast in, float32 out."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        # ordinary tensors even when built inside inference_mode (the predictor builds its
        # engine in set_image): inference tensors would not track the version counter that
        # caches of derived weights (TinyViT's attention biases) key on
        with torch.inference_mode(False), torch.no_grad():
            self.module = copy.deepcopy(module).to(torch.bfloat16)
        for name in ("img_size",):
            if hasattr(module, name):
                setattr(self, name, getattr(module, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(torch.bfloat16)).float()


def autocast_bf16(fast: nn.Module, decoder: bool = True, encoder: bool = True) -> nn.Module:
    """Image encoder and mask decoder in bfloat16 autocast (``encoder=False``: the encoder is
    already bfloat16, e.g. :class:`BF16Weights`)."""
    if not native_bf16(fast.device):
        warnings.warn(
            "this CPU has no native bfloat16 (AVX512-BF16/AMX): bf16 mode is slower than float32 here",
            RuntimeWarning, stacklevel=3,
        )
    if encoder:
        fast.image_encoder = Autocast(fast.image_encoder)
    if decoder:
        fast.mask_decoder = Autocast(fast.mask_decoder)
    return fast


def int8_model(model: nn.Module, fast: nn.Module, optimize: Callable[..., nn.Module], cache_dir=None,
               threads: int | None = None, backend: str | None = None) -> nn.Module:
    """Static int8 image encoder from the model's int8 artifact (``model.info.int8``: loaded
    with ``build_sam(checkpoint=ARTIFACT)``, written by ``pocketsam quantize``), and the
    float32 fast decoder.

    ``backend``: ``"torch"`` (oneDNN int8 linear layers inside the default path) or
    ``"onnxruntime"`` (the artifact's int8 ONNX encoder); ``None``: whichever a one-off
    measurement of this model on this machine found faster (cached;
    :func:`pocketsam.runtime.select.int8_backend`). ``optimize``: the runtime's
    :func:`~pocketsam.runtime.optimize` (for the default copy the torch backend starts from).
    CPU only."""
    if fast.device.type != "cpu":
        raise InputError("int8 mode runs on CPU only", "use mode='bf16' on CUDA")
    if backend not in (None, "torch", "onnxruntime", "openvino"):
        raise InputError(f"unknown int8 backend '{backend}'", "use 'torch', 'onnxruntime' or 'openvino'")
    art = own_artifact(model)
    if isinstance(art, openvino.OpenVINOArtifact):  # NNCF int8: OpenVINO runs it, whatever backend says
        fast.image_encoder = openvino.compile_artifact(art, "f32", threads)
        fast.mask_decoder = fast_mask_decoder(fast.mask_decoder)
        fast.info = replace(model.info, speed=SpeedPath("int8", f"OpenVINO NNCF int8 encoder: {art.describe()}"))
        return fast
    if backend == "openvino":
        raise InputError("backend 'openvino' runs OpenVINO int8 artifacts only",
                         "make one with `pocketsam quantize --backend openvino`, or use 'torch' / 'onnxruntime'")
    if art.img_size != fast.img_size:
        raise InputError(f"the int8 encoder was quantised for {art.img_size}² inputs, this model runs at {fast.img_size}²",
                         "quantise the model at its input size")
    part = art.meta.get("torch") or {}
    if backend is None and torch_int8_available() and part.get("ranges"):
        backend = int8_backend(model, optimize, cache_dir)  # whichever measured faster for this model here
    if backend == "torch":
        if not torch_int8_available():
            raise InputError("torch's oneDNN int8 kernels are not available here", "use backend='onnxruntime'")
        try:
            ranges = check_ranges(part.get("ranges"))
        except ValueError as exc:
            raise CheckpointError(f"int8 artifact '{art.folder}' is damaged: its torch ranges are invalid ({exc})",
                                  "re-create it with `pocketsam quantize`") from None
        fast = optimize(model, "default")
        convert(fast.image_encoder, ranges, part.get("float") or ())
        detail = "torch oneDNN int8 linear layers"
    else:
        fast.image_encoder = OrtImageEncoder(runnable_encoder(art, cache_dir), fast.img_size, threads)
        fast.mask_decoder = fast_mask_decoder(fast.mask_decoder)
        detail = "ONNX Runtime QDQ encoder" + (" (uint8 weights: no VNNI)" if saturates_int16() else "")
    fast.info = replace(model.info, speed=SpeedPath("int8", f"{detail}: {art.describe()}"))
    return fast


def own_artifact(model: nn.Module):
    """The int8 artifact ``model`` was loaded from, if its weights are still the artifact's.

    Raises:
        InputError: the model has none (or was changed since), with how to make one.
    """
    art = model.info.int8
    if art is None:
        raise InputError("int8 mode needs a model loaded from an int8 artifact",
                         "make one with `pocketsam quantize CKPT --calib DIR --out OUT` (or "
                         "pocketsam.quant.quantize_model(sam, images, OUT)), then build_sam(checkpoint=OUT)")
    if art.model_sha256 != weights_sha256(model):
        raise InputError("the model's weights changed since it was loaded from its int8 artifact",
                         "quantise the changed model again (`pocketsam quantize`)")
    return art


class Compiled(nn.Module):
    """``torch.compile`` of a module, remembering how long the first call (compile) took."""

    def __init__(self, module: nn.Module, **compile_kwargs) -> None:
        super().__init__()
        self.module = module
        self.compiled = torch.compile(module, **compile_kwargs)
        self.compile_seconds: float | None = None
        for name in ("img_size", "multimask_only", "num_mask_tokens", "transformer_dim"):
            if hasattr(module, name):
                setattr(self, name, getattr(module, name))

    def forward(self, *args, **kwargs):
        if self.compile_seconds is None:
            start = time.perf_counter()
            out = self.compiled(*args, **kwargs)
            self.compile_seconds = time.perf_counter() - start
            return out
        return self.compiled(*args, **kwargs)


def compile_model(fast: nn.Module, decoder: bool = True, freezing: bool = True) -> nn.Module:
    """``torch.compile`` the image encoder (and the mask decoder, with dynamic batch size).

    ``freezing`` lets Inductor constant-fold and pre-pack the weights (CPU), which only
    applies under ``torch.no_grad``/``inference_mode`` — the way :class:`SamPredictor` runs.
    """
    options = {"freezing": freezing} if fast.device.type == "cpu" else {}
    fast.image_encoder = Compiled(fast.image_encoder, options=options)
    if decoder:
        # no freezing here: Inductor 2.13's freezing pass fails on dynamic batch sizes
        fast.mask_decoder = Compiled(fast.mask_decoder, dynamic=True)
    return fast
