"""Mask decoder rewrites for inference (applied to an inference copy).

SAM's output upscaling is ``ConvTranspose2d(k=2, s=2) → LayerNorm2d → GELU →
ConvTranspose2d(k=2, s=2) → GELU``. A stride-2 kernel-2 transposed convolution never
overlaps its outputs, so it is exactly a per-pixel linear layer to ``4·C_out`` channels
followed by a 2×2 pixel shuffle. :class:`FastUpscaling` computes the whole stack that way on
channels-last data (GEMMs instead of the slow generic transposed-convolution kernel, a
fused LayerNorm, GELU fused into the second GEMM) and makes one copy at the end into the
B×C×4H×4W layout the decoder expects. Same math; float32 rounding differences only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pocketsam.models.common import LayerNorm2d
from pocketsam.speed.fuse import LinearGELU


def _as_linear(conv: nn.ConvTranspose2d) -> nn.Linear:
    cin, cout = conv.in_channels, conv.out_channels
    lin = nn.Linear(cin, 4 * cout, bias=conv.bias is not None,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        # weight (cin, cout, ky, kx) → rows ordered (ky, kx, cout)
        lin.weight.copy_(conv.weight.permute(2, 3, 1, 0).reshape(4 * cout, cin))
        if conv.bias is not None:
            lin.bias.copy_(conv.bias.repeat(4))
    return lin.requires_grad_(False)


def _matches(seq: nn.Module) -> bool:
    if not isinstance(seq, nn.Sequential) or len(seq) != 5:
        return False
    c1, ln, a1, c2, a2 = seq
    def ok(c):
        return (type(c) is nn.ConvTranspose2d and c.kernel_size == (2, 2) and c.stride == (2, 2)
                and c.padding == (0, 0) and c.output_padding == (0, 0) and c.groups == 1
                and c.dilation == (1, 1))
    gelu = all(type(a) is nn.GELU and a.approximate == "none" for a in (a1, a2))
    return ok(c1) and ok(c2) and type(ln) is LayerNorm2d and gelu


class FastUpscaling(nn.Module):
    def __init__(self, seq: nn.Sequential) -> None:
        super().__init__()
        c1, ln, _, c2, _ = seq
        self.c1, self.c2 = c1.out_channels, c2.out_channels
        self.lin1 = _as_linear(c1)
        self.norm_weight, self.norm_bias, self.eps = ln.weight, ln.bias, ln.eps
        self.lin2 = LinearGELU(_as_linear(c2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        y = self.lin1(x.permute(0, 2, 3, 1))  # (B, H, W, 4·C1), no copy for channels-last x
        y = y.view(b, h, w, 2, 2, self.c1).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, self.c1)
        y = F.gelu(F.layer_norm(y, (self.c1,), self.norm_weight, self.norm_bias, self.eps))
        y = self.lin2(y)  # (B, 2H, 2W, 4·C2), GELU fused
        y = y.view(b, 2 * h, 2 * w, 2, 2, self.c2).permute(0, 5, 1, 3, 2, 4)
        return y.reshape(b, self.c2, 4 * h, 4 * w)


def fast_upscaling(decoder: nn.Module) -> nn.Module:
    """Replace ``decoder.output_upscaling`` by :class:`FastUpscaling` when it has SAM's
    structure (in place, on an inference copy). Returns ``decoder``."""
    if _matches(getattr(decoder, "output_upscaling", None)):
        decoder.output_upscaling = FastUpscaling(decoder.output_upscaling)
    return decoder
