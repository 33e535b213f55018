"""Inference speed-ups applied from outside the model code (segment-anything-fast style).

:func:`optimize` turns a built :class:`~pocketsam.models.sam.Sam` into an *inference copy*
for one of several modes. The copy shares the source model's weights where it can and
never changes the source model, whose ``state_dict`` keeps the official checkpoint layout.

===========  ===============================================================================
mode         what it does
===========  ===============================================================================
reference    the model as built (no rewrites)
default      BatchNorm folded into convolutions, channels-last convolutions, GELU fused into
             the preceding convolution / linear layer (oneDNN post-ops), the decoder's
             transposed convolutions as GEMMs + pixel shuffle. float32; meets the golden
             tolerances. :class:`~pocketsam.SamPredictor` uses it unless told otherwise.
bf16         on CPU: default's fused image encoder with its weights cast to bfloat16 once
             (oneDNN's bf16 kernels with GELU fused; AMX/AVX512-BF16), the decoder under
             bfloat16 autocast; on CUDA: autocast for both. Slower than float32 on CPUs
             without native bf16 (a warning says so).
int8         static int8 linear layers in the image encoder (VNNI / AMX-INT8 kernels) from the
             model's int8 artifact (``pocketsam quantize``, :mod:`pocketsam.quant`); run by
             torch's oneDNN int8 kernels or by ONNX Runtime, whichever measured faster for the
             model on this machine (``backend=`` forces one); the default float32 decoder.
fast         the fastest of default / bf16 / int8 / OpenVINO that keeps mask IoU >= 0.99 against
             float32 on this CPU (:mod:`pocketsam.runtime.select`): candidates from the CPU
             flags, speed from a one-off measurement of the model's encoder cached per machine;
             ``info.speed.chosen_by`` on the copy says which and why.
compile      BatchNorm folded, then ``torch.compile`` (Inductor, max-autotune off) on the image
             encoder and the mask decoder. The first image pays the compile time.
openvino     the image encoder (exported once to ONNX, cached like ``onnx``) on OpenVINO in f32,
             or bf16 where OpenVINO has native bf16 kernels and a one-off measurement found
             it faster with mask IoU >= 0.99 (``precision=`` forces one); pocketsam's
             decoder. Needs the ``[openvino]`` extra.
onnx         encoder and decoder exported with ``torch.onnx`` and run by ONNX Runtime
             (CPUExecutionProvider); the .onnx files are cached under
             ``$POCKETSAM_CACHE`` (default ``~/.cache/pocketsam/onnx``) keyed by a hash of
             the weights.
===========  ===============================================================================

Threads: torch's intra-op thread count is used as is (``torch.set_num_threads`` /
``OMP_NUM_THREADS``); ``POCKETSAM_THREADS`` overrides both (see :func:`configure_threads`).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from pocketsam.checkpoints.fingerprint import weights_key
from pocketsam.errors import InputError
from pocketsam.models.info import SpeedPath
from pocketsam.platform import configure_threads
from pocketsam.runtime import openvino, select
from pocketsam.runtime.backends import BF16Weights, autocast_bf16, compile_model, int8_model
from pocketsam.runtime.decoder import fast_mask_decoder
from pocketsam.runtime.fold import fold_batchnorm, inference_copy, to_channels_last
from pocketsam.runtime.fuse import fuse_gelu
from pocketsam.runtime.modes import MODES, check_mode
from pocketsam.runtime.onnx import onnx_model

__all__ = [
    "MODES", "check_mode", "choose_fast", "configure_threads", "fold_batchnorm", "fuse_gelu", "inference_copy", "optimize",
    "to_channels_last", "weights_key",
]


def optimize(model: nn.Module, mode: str = "default", **options) -> nn.Module:
    """An inference copy of ``model`` (a :class:`~pocketsam.models.sam.Sam`) for ``mode``.

    The copy has the same interface (``image_encoder``, ``prompt_encoder``,
    ``mask_decoder``, ``preprocess``, ...); its ``info.speed`` says how it runs.
    ``options`` go to the mode's backend (``cache_dir`` for onnx, ``backend`` for int8, ...).
    """
    mode = check_mode(mode)
    copy_of = model.info.speed
    if copy_of is not None:  # already an inference copy: it runs as it is, or not at all
        if mode in ("reference", copy_of.mode) or (mode == "fast" and copy_of.chosen_by is not None):
            return model
        raise InputError(f"this model is already an inference copy for mode '{copy_of.mode}' "
                         f"({copy_of.describe()}), so it cannot be made into mode '{mode}'",
                         "pass the original model (the one optimize() or build_sam() returned) instead")
    if mode == "fast":
        choice = choose_fast(model, cache_dir=options.get("cache_dir"))
        name, chosen = select.mode_options(choice.mode, options.pop("cache_dir", None))  # e.g. "int8:torch"
        fast = optimize(model, name, **{**options, **chosen})
        fast.info = replace(fast.info, speed=replace(fast.info.speed, chosen_by=choice))
        return fast
    fast = inference_copy(model)
    fast.info = replace(model.info, speed=SpeedPath(mode))
    if mode == "reference":
        return fast
    cpu = fast.device.type == "cpu"
    if mode == "int8":
        return int8_model(model, fast, optimize, **options)
    if mode in ("default", "bf16"):
        enc = fold_batchnorm(fast.image_encoder)
        if cpu:
            to_channels_last(enc)
            fuse_gelu(enc)
            if mode == "bf16":
                # the fused float32 copy, cast to bfloat16 once: autocast would leave GELU
                # unfused and cast every weight again on every call (docs/speed-peers.md)
                enc = BF16Weights(enc)
        fast.mask_decoder = fast_mask_decoder(fast.mask_decoder)
        fast.image_encoder = ChannelsLastInput(enc) if cpu else enc
        if mode == "bf16":
            autocast_bf16(fast, encoder=not cpu, **options)
        return fast
    if mode == "compile":
        fold_batchnorm(fast.image_encoder)
        return compile_model(fast, **options)
    if mode == "onnx":
        return onnx_model(model, fast, **options)
    if mode == "openvino":
        if options.get("precision") is None:
            options["precision"] = select.openvino_precision(model, optimize, options.get("cache_dir"))
        return openvino.openvino_model(model, fast, **options)
    raise AssertionError(mode)  # pragma: no cover


def choose_fast(model: nn.Module, cache_dir=None) -> "select.FastChoice":
    """What ``mode="fast"`` runs for ``model`` on this machine, and why
    (:func:`pocketsam.runtime.select.choose_fast`)."""
    return select.choose_fast(model, optimize, cache_dir)


class ChannelsLastInput(nn.Module):
    """Runs the wrapped encoder on a channels-last input and returns a contiguous result."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.img_size = encoder.img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.contiguous(memory_format=torch.channels_last)).contiguous()
