"""Calibration of the torch int8 backend (:mod:`pocketsam.runtime.int8_torch`): input ranges
of every quantised linear layer of the ``default`` copy's encoder, each searched against its
layer's output error (:mod:`pocketsam.runtime.qnumerics`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from pocketsam.runtime.int8_torch import linear_sites, plain_linear
from pocketsam.runtime.qnumerics import ALPHAS, clip_errors, fake_quant_weight, search_clip_range

ROWS = 1024
"""Rows of each layer's input kept per calibration image for the range search."""


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
            lin = plain_linear(m)
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


