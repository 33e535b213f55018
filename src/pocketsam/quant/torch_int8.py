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

Calibration (:func:`calibrate_torch`) hooks the same layers of the ``default`` copy, so the
ranges are keyed by module names of that copy; the range search is the one of
:mod:`pocketsam.quant.numerics` (reading layer's output error).
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pocketsam.quant.numerics import ALPHAS, activation_qparams, clip_errors, fake_quant_weight, quantize_weight, search_clip_range

ROWS = 1024


def available() -> bool:
    """torch's oneDNN int8 linear kernels exist and the CPU has int8 dot products."""
    from pocketsam.speed.select import int8_dot_product, x86

    ops = getattr(torch.ops, "onednn", None)
    return (x86() and torch.backends.mkldnn.is_available()
            and ops is not None and hasattr(ops, "qlinear_pointwise") and hasattr(ops, "qlinear_prepack")
            and int8_dot_product())


def _plain(linear: nn.Module) -> nn.Linear:
    from pocketsam.speed.fuse import FusedLinear

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
        self.fc1 = QLinear(_plain(mlp.fc1), fc1_range, gelu=True, out_range=fc2_range)
        self.fc2 = QLinear(_plain(mlp.fc2), fc2_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        return self.fc2(self.fc1(x), quantized=True)


def linear_sites(encoder: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, role)`` of the linear layers this backend quantises, in module
    order: ``role`` is ``qkv``/``proj`` (attention) or ``fc1``/``fc2`` (MLP)."""
    from pocketsam.speed.fuse import FusedMlp

    sites = []
    for name, m in encoder.named_modules():
        if isinstance(m, FusedMlp):
            sites += [(f"{name}.fc1", m.fc1, "fc1"), (f"{name}.fc2", m.fc2, "fc2")]
        elif hasattr(m, "qkv") and hasattr(m, "proj") and isinstance(getattr(m, "qkv"), nn.Linear):
            sites += [(f"{name}.qkv", m.qkv, "qkv"), (f"{name}.proj", m.proj, "proj")]
    return sites


def calibrate_torch(encoder: nn.Module, inputs: Sequence[torch.Tensor], search: bool = True,
                    alphas: Sequence[float] = ALPHAS) -> tuple[dict[str, list[float]], dict]:
    """Input ranges of :func:`linear_sites` of the ``default`` copy's ``encoder`` over
    ``inputs``, each searched against its layer's output error."""
    sites = linear_sites(encoder)
    stats = {name: {"lo": 0.0, "hi": 0.0, "rows": []} for name, _, _ in sites}
    gen = torch.Generator().manual_seed(0)

    def hook(name):
        def record(module, args, out):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            s = stats[name]
            s["lo"], s["hi"] = min(s["lo"], float(x.min())), max(s["hi"], float(x.max()))
            if search:
                idx = torch.randperm(x.shape[0], generator=gen)[:ROWS]
                s["rows"].append(x[idx].clone())
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m, _ in sites]
    try:
        with torch.inference_mode():
            for x in inputs:
                encoder(x)
    finally:
        for h in handles:
            h.remove()
    ranges, report = {}, {}
    for name, m, _ in sites:
        s = stats[name]
        lo, hi = s["lo"], s["hi"]
        if search and s["rows"] and hi > lo:
            lin = _plain(m)
            w, b = lin.weight.detach().float(), None if lin.bias is None else lin.bias.detach().float()
            qw = fake_quant_weight(w, 0)
            xs = torch.cat(s["rows"])
            errs = clip_errors(xs, lo, hi, lambda t: F.linear(t, qw, b), lambda t: F.linear(t, w, b), alphas)
            lo, hi, alpha = search_clip_range(errs, lo, hi, alphas)
            energy = max(float((F.linear(xs, w, b).double() ** 2).sum()), 1e-30)
            report[name] = {"alpha": alpha, "rel_err_minmax": float(errs[0] / energy),
                            "rel_err_searched": float(errs.min() / energy)}
        ranges[name] = [float(lo), float(hi)]
        s["rows"].clear()
    return ranges, report


def convert(encoder: nn.Module, ranges: dict[str, Sequence[float]], keep_float: Sequence[str] = ()) -> nn.Module:
    """Replace the :func:`linear_sites` of ``encoder`` (a ``default`` copy's) that have a
    range by int8 modules, in place; ``keep_float`` names stay float32."""
    from pocketsam.speed.fuse import FusedMlp

    keep = set(keep_float)
    parents = dict(encoder.named_modules())
    for name, m in list(encoder.named_modules()):
        if isinstance(m, FusedMlp):
            f1, f2 = f"{name}.fc1", f"{name}.fc2"
            if f1 in ranges and f2 in ranges and f1 not in keep and f2 not in keep:
                parent, _, attr = name.rpartition(".")
                setattr(parents[parent] if parent else encoder, attr, QMlp(m, ranges[f1], ranges[f2]))
            elif f2 in ranges and f2 not in keep:
                m.fc2 = QLinear(_plain(m.fc2), ranges[f2])
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
