"""Inference-only graph rewrites applied from outside the model code.

All functions work on an *inference copy* made by :func:`inference_copy`, which shares
every parameter and buffer with the source model (no weight memory is duplicated) but has
its own module tree, so rewriting modules never changes the source model or its
``state_dict`` (the official checkpoint layout that export and training rely on).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pocketsam.models.common import ConvBN


def inference_copy(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` in eval mode that shares all tensors with it."""
    memo: dict[int, object] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        memo[id(t)] = t
    out = copy.deepcopy(model, memo)
    return out.eval()


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One convolution equal to ``bn(conv(x))`` with BatchNorm in eval mode (running stats)."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    # computed in float64 so the folded weights are the correctly rounded fp32 values
    w = conv.weight.double()
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused.weight.copy_((w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    fused.bias.copy_(((bias - bn.running_mean.double()) * scale + bn.bias.double()).to(conv.weight.dtype))
    return fused.eval().requires_grad_(False)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every :class:`~pocketsam.models.common.ConvBN` (and every ``Conv2d`` directly
    followed by ``BatchNorm2d`` inside an ``nn.Sequential``) by one folded ``Conv2d``.

    Mutates ``model``'s module tree in place — call it on an :func:`inference_copy`.
    Returns ``model``.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, ConvBN):
            setattr(model, name, fold_conv_bn(child.c, child.bn))
            continue
        if isinstance(child, nn.Sequential) and not isinstance(child, ConvBN):
            items = list(child.named_children())
            for (n1, m1), (n2, m2) in zip(items, items[1:]):
                if isinstance(m1, nn.Conv2d) and isinstance(m2, nn.BatchNorm2d) and m2.track_running_stats:
                    setattr(child, n1, fold_conv_bn(m1, m2))
                    setattr(child, n2, nn.Identity())
        fold_batchnorm(child)
    return model


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store 4-D convolution weights channels-last (NHWC), the layout oneDNN's fast CPU
    kernels use. Replaces the weight *Parameters* of the copy (new tensors, conv weights
    only), so the source model is untouched. Returns ``model``."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.weight.dim() == 4:
                w = module.weight
                if not w.is_contiguous(memory_format=torch.channels_last):
                    module.weight = nn.Parameter(
                        w.detach().contiguous(memory_format=torch.channels_last), requires_grad=False
                    )
    return model
