"""The arithmetic of 8-bit quantisation, exactly as ONNX Runtime executes it, and the
clipping-range search.

* **Weights:** per output channel, symmetric int8 in [-127, 127] (zero point 0), scale =
  max|w| / 127 per channel (ONNX Runtime's symmetric ``QInt8``).
* **Activations:** per tensor, asymmetric uint8 in [0, 255]. The real range is widened to
  contain 0 (so that zero padding is exact), scale = (rmax - rmin) / 255 and zero point =
  round(-rmin / scale). Rounding is half-to-even, as ``QuantizeLinear``.
* **Range search** (:func:`clip_errors`, :func:`search_clip_range`): for every quantised
  activation, candidate ranges ``alpha * [min, max]`` of the calibration data are scored by
  the distortion of *the output of the layer that reads it* (quantised input and quantised
  weights against the float32 layer), summed over the calibration images, and the lowest
  wins. This is PTQ4ViT's layer-output objective without the Hessian weighting: a plain
  output mean squared error. Naive min/max (``alpha = 1``) is always a candidate, so the
  search never does worse than min/max on the calibration data.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

#: uint8 activation range.
QMIN, QMAX = 0, 255
#: symmetric int8 weight range (ONNX Runtime's symmetric QInt8).
WMAX = 127
#: candidate clipping factors of the range search (1.0 = naive min/max).
ALPHAS: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


def activation_qparams(rmin: float, rmax: float) -> tuple[float, int]:
    """(scale, zero_point) of uint8 quantisation for the real range [rmin, rmax], as ONNX
    Runtime's quantiser computes them (float32 arithmetic; the range always contains 0)."""
    rmin = np.float32(min(float(rmin), 0.0))
    rmax = np.float32(max(float(rmax), 0.0))
    if rmax == rmin:
        return 1.0, 0
    scale = np.float32((rmax - rmin) / np.float32(QMAX - QMIN))
    zero_point = int(np.clip(np.round(np.float32(QMIN) - rmin / scale), QMIN, QMAX))
    return float(scale), zero_point


def quantize(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """float → uint8 (``QuantizeLinear``: round half to even, saturate)."""
    return torch.clamp(torch.round(x / scale) + zero_point, QMIN, QMAX).to(torch.uint8)


def dequantize(q: torch.Tensor, scale: float | torch.Tensor, zero_point: int | torch.Tensor = 0) -> torch.Tensor:
    """uint8/int8 → float32 (``DequantizeLinear``); ``scale`` may be per channel (broadcast)."""
    return (q.to(torch.float32) - zero_point) * scale


def fake_quant(x: torch.Tensor, rmin: float, rmax: float) -> torch.Tensor:
    """``dequantize(quantize(x))`` for the range [rmin, rmax]: what the next layer sees
    (computed in float32 without the uint8 round trip; the same values)."""
    scale, zero_point = activation_qparams(rmin, rmax)
    q = torch.round(x / scale).add_(zero_point).clamp_(QMIN, QMAX)
    return q.sub_(zero_point).mul_(scale)


def quantize_weight(w: torch.Tensor, axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel symmetric int8 along ``axis``: (int8 tensor, float32 scales of shape
    ``w.shape[axis]``). A channel of zeros gets scale 1."""
    w = w.float()
    dims = [d for d in range(w.dim()) if d != axis % w.dim()]
    absmax = w.abs().amax(dim=dims) if dims else w.abs()
    scale = torch.where(absmax > 0, absmax / WMAX, torch.ones_like(absmax))
    shape = [1] * w.dim()
    shape[axis] = -1
    q = torch.clamp(torch.round(w / scale.view(shape)), -WMAX, WMAX).to(torch.int8)
    return q, scale


def fake_quant_weight(w: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """The float32 weights an int8 kernel effectively multiplies by."""
    q, scale = quantize_weight(w, axis)
    shape = [1] * w.dim()
    shape[axis] = -1
    return dequantize(q, scale.view(shape))


def clip_errors(
    x: torch.Tensor,
    rmin: float,
    rmax: float,
    quantized_layer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    float_layer: Callable[[torch.Tensor], torch.Tensor] | None = None,
    alphas: Sequence[float] = ALPHAS,
) -> np.ndarray:
    """Squared error of the layer output for each candidate range ``alpha * [rmin, rmax]``.

    Args:
        x: activation samples (float32).
        rmin, rmax: the range observed over all calibration data.
        quantized_layer: the consuming layer with quantised weights (``None``: identity,
            i.e. the error of the tensor itself, for tensors no quantised layer reads).
        float_layer: the float32 layer (default ``quantized_layer``).
    Returns:
        sum of squared output errors per alpha (float64), to be summed over images.
    """
    x = x.float()
    qlayer = quantized_layer or (lambda t: t)
    flayer = float_layer or qlayer
    ref = flayer(x)
    errs = np.empty(len(alphas))
    for i, a in enumerate(alphas):
        out = qlayer(fake_quant(x, a * rmin, a * rmax))
        errs[i] = float(((out - ref).double() ** 2).sum())
    return errs


def search_clip_range(errors: np.ndarray, rmin: float, rmax: float,
                      alphas: Sequence[float] = ALPHAS) -> tuple[float, float, float]:
    """The range with the lowest accumulated error: (rmin, rmax, alpha)."""
    best = int(np.argmin(errors))
    return alphas[best] * rmin, alphas[best] * rmax, alphas[best]
