"""The int8 encoder on torch's x86 int8 kernels (oneDNN ``qlinear``: AVX512-VNNI / AMX-INT8),
run eagerly inside the ``default`` inference copy.

Every linear layer of the encoder's attention (``qkv``, ``proj``) and MLP (``fc1``/``lin1``,
``fc2``/``lin2``) becomes :class:`QLinear`: per-channel symmetric int8 weights (quantised at
load from the float weights, as ONNX Runtime's ``QInt8``), a per-tensor uint8 input with the
calibrated (searched) range, float32 output. In an MLP, ``fc1`` writes its GELU output
directly as uint8 (oneDNN's fused GELU post-op) in the range calibrated for ``fc2``'s input,
so the widest activation of each block never exists in float32 (:class:`QMlp`). Everything
else (convolutions, attention products and softmax, LayerNorm, residuals) is the ``default``
path's float32.

Calibration (:mod:`pocketsam.quant.torch_int8`) hooks the same layers of the ``default``
copy, so the ranges are keyed by module names of that copy.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from pocketsam.platform import int8_dot_product, x86
from pocketsam.runtime.fuse import FusedLinear, FusedMlp
from pocketsam.runtime.qnumerics import activation_qparams, quantize_weight


def available() -> bool:
    """torch's oneDNN int8 linear kernels exist and the CPU has int8 dot products."""
    ops = getattr(torch.ops, "onednn", None)
    return (x86() and torch.backends.mkldnn.is_available()
            and ops is not None and hasattr(ops, "qlinear_pointwise") and hasattr(ops, "qlinear_prepack")
            and int8_dot_product())


def plain_linear(linear: nn.Module) -> nn.Linear:
    return linear.linear if isinstance(linear, FusedLinear) else linear


def _quantize_input(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "quantize_per_tensor is deprecated" (once per process)
            return torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).int_repr()
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch without quantized tensors
        return torch.round(x / scale).add_(zero_point).clamp_(0, 255).to(torch.uint8)


class QLinear(nn.Module):
    """``linear(x)`` (optionally followed by GELU) with int8 weights and a uint8 input;
    float32 output, or uint8 in ``out_range`` (for the next :class:`QLinear`)."""

    def __init__(self, linear: nn.Linear, in_range: Sequence[float], gelu: bool = False,
                 out_range: Sequence[float] | None = None) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        qw, scales = quantize_weight(w, 0)
        self.x_scale, self.x_zp = activation_qparams(*in_range)
        self.packed = torch.ops.onednn.qlinear_prepack(qw, None)
        self.w_scales = scales
        self.w_zps = torch.zeros(w.shape[0], dtype=torch.int64)
        self.bias = linear.bias.detach().float() if linear.bias is not None else None
        self.post = "gelu" if gelu else "none"
        self.out_features = w.shape[0]
        if out_range is None:
            self.o_scale, self.o_zp, self.o_dtype = 1.0, 0, torch.float32
        else:
            (self.o_scale, self.o_zp), self.o_dtype = activation_qparams(*out_range), None

    def forward(self, x: torch.Tensor, quantized: bool = False) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        if not quantized:
            x = _quantize_input(x.contiguous(), self.x_scale, self.x_zp)
        y = torch.ops.onednn.qlinear_pointwise(
            x, self.x_scale, self.x_zp, self.packed, self.w_scales, self.w_zps, self.bias,
            self.o_scale, self.o_zp, self.o_dtype, self.post, [], "none")
        return y.view(*shape[:-1], self.out_features)


class QMlp(nn.Module):
    """Pre-norm MLP (TinyViT ``Mlp``, SAM ``MLPBlock`` as fused by the default path) with
    ``fc1 → GELU`` written as uint8 straight into ``fc2``."""

    def __init__(self, mlp: nn.Module, fc1_range, fc2_range) -> None:
        super().__init__()
        self.norm = mlp.norm
        self.fc1 = QLinear(plain_linear(mlp.fc1), fc1_range, gelu=True, out_range=fc2_range)
        self.fc2 = QLinear(plain_linear(mlp.fc2), fc2_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        return self.fc2(self.fc1(x), quantized=True)


def linear_sites(encoder: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, role)`` of the linear layers this backend quantises, in module
    order: ``role`` is ``qkv``/``proj`` (attention) or ``fc1``/``fc2`` (MLP)."""
    sites = []
    for name, m in encoder.named_modules():
        if isinstance(m, FusedMlp):
            sites += [(f"{name}.fc1", m.fc1, "fc1"), (f"{name}.fc2", m.fc2, "fc2")]
        elif hasattr(m, "qkv") and hasattr(m, "proj") and isinstance(getattr(m, "qkv"), nn.Linear):
            sites += [(f"{name}.qkv", m.qkv, "qkv"), (f"{name}.proj", m.proj, "proj")]
    return sites


def convert(encoder: nn.Module, ranges: dict[str, Sequence[float]], keep_float: Sequence[str] = ()) -> nn.Module:
    """Replace the :func:`linear_sites` of ``encoder`` (a ``default`` copy's) that have a
    range by int8 modules, in place; ``keep_float`` names stay float32."""
    keep = set(keep_float)
    parents = dict(encoder.named_modules())
    for name, m in list(encoder.named_modules()):
        if isinstance(m, FusedMlp):
            f1, f2 = f"{name}.fc1", f"{name}.fc2"
            if f1 in ranges and f2 in ranges and f1 not in keep and f2 not in keep:
                parent, _, attr = name.rpartition(".")
                setattr(parents[parent] if parent else encoder, attr, QMlp(m, ranges[f1], ranges[f2]))
            elif f2 in ranges and f2 not in keep:
                m.fc2 = QLinear(plain_linear(m.fc2), ranges[f2])
        elif hasattr(m, "qkv") and hasattr(m, "proj") and isinstance(getattr(m, "qkv"), nn.Linear):
            for attr in ("qkv", "proj"):
                full = f"{name}.{attr}"
                if full in ranges and full not in keep:
                    setattr(m, attr, QLinear(getattr(m, attr), ranges[full]))
    return encoder


def check_ranges(ranges: object) -> dict[str, list[float]]:
    """Validated ``{name: [lo, hi]}`` (finite, lo <= 0 <= ... any order fixed by qparams)."""
    if not isinstance(ranges, dict):
        raise ValueError("ranges must be an object")
    out = {}
    for k, v in ranges.items():
        if (not isinstance(k, str) or not isinstance(v, list) or len(v) != 2
                or not all(isinstance(x, (int, float)) and np.isfinite(x) for x in v)):
            raise ValueError(f"bad range for {k!r}")
        out[k] = [float(v[0]), float(v[1])]
    return out


Log = Callable[[str], None]
