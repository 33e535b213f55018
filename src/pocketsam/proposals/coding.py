"""Box coding of the proposal head (CenterNet): targets from boxes, boxes from outputs.

All boxes are XYXY in the model's input frame (pixels of the S×S padded input). A box
belongs to the cell holding its centre: the cell's target is 1 there, with a Gaussian
around it (σ = a sixth of the box's side, at least 0.5 cells) that softens the penalty
for near misses, as CenterNet does.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def encode_targets(boxes: torch.Tensor, valid: torch.Tensor, grid: int, stride: float) -> dict[str, torch.Tensor]:
    """Training targets for a batch.

    Args:
        boxes: (B, K, 4) XYXY (inclusive pixel indices, as the dataset's) in the input frame.
        valid: (B, K) bool, which rows are real.
        grid: output cells per side; stride: input pixels per cell.
    Returns:
        ``heat`` (B, G, G) in [0, 1], ``centre`` (B, G, G) bool, ``size`` (B, 2, G, G) log
        (w, h) in cells and ``offset`` (B, 2, G, G), both meaningful where ``centre``.
    """
    b = boxes.shape[0]
    dev = boxes.device
    heat = torch.zeros(b, grid, grid, device=dev)
    centre = torch.zeros(b, grid, grid, dtype=torch.bool, device=dev)
    size = torch.zeros(b, 2, grid, grid, device=dev)
    offset = torch.zeros(b, 2, grid, grid, device=dev)
    ar = torch.arange(grid, device=dev, dtype=torch.float32) + 0.5
    for i in range(b):
        bx = boxes[i][valid[i]].float()
        if len(bx) == 0:
            continue
        x0, y0, x1, y1 = bx.unbind(1)
        w, h = x1 - x0 + 1, y1 - y0 + 1  # inclusive edges
        cx, cy = (x0 + x1 + 1) / 2 / stride, (y0 + y1 + 1) / 2 / stride  # in cells
        sx = (w / stride / 6).clamp(min=0.5)
        sy = (h / stride / 6).clamp(min=0.5)
        ix = cx.floor().long().clamp(0, grid - 1)
        iy = cy.floor().long().clamp(0, grid - 1)
        gx = torch.exp(-((ar[None] - (ix[:, None] + 0.5)) ** 2) / (2 * sx[:, None] ** 2))  # (K, G)
        gy = torch.exp(-((ar[None] - (iy[:, None] + 0.5)) ** 2) / (2 * sy[:, None] ** 2))
        heat[i] = (gy[:, :, None] * gx[:, None, :]).amax(0)
        centre[i, iy, ix] = True
        heat[i, iy, ix] = 1.0
        size[i, 0, iy, ix] = torch.log(w / stride)
        size[i, 1, iy, ix] = torch.log(h / stride)
        offset[i, 0, iy, ix] = cx - ix
        offset[i, 1, iy, ix] = cy - iy
    return {"heat": heat, "centre": centre, "size": size, "offset": offset}


def head_loss(out: torch.Tensor, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """CenterNet's penalty-reduced focal loss on the centre map plus L1 on log size and
    offset at the centres, each normalised by the number of objects."""
    logit = out[:, 0].float()
    p = logit.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = t["centre"]
    n = pos.sum().clamp(min=1).float()
    pos_loss = -(F.logsigmoid(logit) * (1 - p) ** 2)[pos].sum()
    neg_w = (1 - t["heat"]) ** 4
    neg_loss = -(F.logsigmoid(-logit) * p**2 * neg_w)[~pos].sum()
    focal = (pos_loss + neg_loss) / n
    m = pos[:, None].expand_as(t["size"])
    size = F.l1_loss(out[:, 1:3].float()[m], t["size"][m], reduction="sum") / n
    off = F.l1_loss(out[:, 3:5].float()[m], t["offset"][m], reduction="sum") / n
    loss = focal + size + off
    return loss, {"centre_focal": float(focal.detach()), "size_l1": float(size.detach()), "offset_l1": float(off.detach())}


@torch.no_grad()
def decode_boxes(out: torch.Tensor, stride: float, top_k: int = 100, min_score: float = 0.05) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Proposals from head outputs: local maxima of the centre map (3×3), best ``top_k``
    with score ≥ ``min_score``. Returns per image (boxes (N, 4) XYXY continuous input-frame
    pixels, scores (N,))."""
    p = out[:, 0].float().sigmoid()
    peak = p == F.max_pool2d(p[:, None], 3, stride=1, padding=1)[:, 0]
    g = p.shape[-1]
    results = []
    for i in range(len(p)):
        scores = torch.where(peak[i], p[i], torch.zeros_like(p[i])).flatten()
        k = min(top_k, scores.numel())
        s, idx = scores.topk(k)
        keep = s >= min_score
        s, idx = s[keep], idx[keep]
        iy, ix = idx // g, idx % g
        cx = (ix.float() + out[i, 3].flatten()[idx].float()) * stride
        cy = (iy.float() + out[i, 4].flatten()[idx].float()) * stride
        w = out[i, 1].flatten()[idx].float().exp() * stride
        h = out[i, 2].flatten()[idx].float().exp() * stride
        results.append((torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), s))
    return results
