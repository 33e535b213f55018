"""Simulated interactive prompting for SAM-style training (vectorised over masks).

Round 1 gives each mask either one point inside it or a noisy version of its box; later
rounds add one correction point drawn uniformly from the error region of the previous
prediction (positive on a missed pixel, negative on a false one).

Clicks follow SAM's convention everywhere (training, validation, evaluation, inference): a
click on pixel (x, y) is the integer coordinate pair (x, y), and the prompt encoder adds
0.5 to reach the pixel's centre.
"""

from __future__ import annotations

import torch

from pocketsam.masks import batched_mask_to_box


def sample_from_regions(regions: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniformly random pixel from each region.

    Args:
        regions: (K, H, W) bool.
    Returns:
        xy (K, 2) float pixel coordinates (integers, SAM's click convention) and ok (K,)
        bool — False where a region is empty (its point is then (0, 0)).
    """
    k, h, w = regions.shape
    flat = regions.reshape(k, -1).float()
    ok = flat.sum(1) > 0
    weights = torch.where(ok[:, None], flat, torch.ones_like(flat))
    idx = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    xy = torch.stack([idx % w, idx // w], dim=1).float()
    return torch.where(ok[:, None], xy, torch.zeros_like(xy)), ok


def noisy_boxes(
    masks: torch.Tensor, generator: torch.Generator | None, noise: float = 0.1, max_noise: float = 20.0
) -> torch.Tensor:
    """Tight mask boxes with each side jittered by N(0, noise · side length), at most ``max_noise`` px."""
    boxes = batched_mask_to_box(masks).float()  # inclusive edges, as the evaluation's box prompts
    k, h, w = masks.shape
    side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1).repeat(1, 2)
    jitter = torch.randn(boxes.shape, generator=generator, device=masks.device) * noise * side
    boxes = boxes + jitter.clamp(-max_noise, max_noise)
    limit = torch.tensor([w, h, w, h], device=masks.device, dtype=boxes.dtype)
    boxes = torch.minimum(boxes.clamp(min=0), limit)
    x0, x1 = torch.minimum(boxes[:, 0], boxes[:, 2]), torch.maximum(boxes[:, 0], boxes[:, 2])
    y0, y1 = torch.minimum(boxes[:, 1], boxes[:, 3]), torch.maximum(boxes[:, 1], boxes[:, 3])
    return torch.stack([x0, y0, x1, y1], 1)


def correction_points(
    pred: torch.Tensor, gt: torch.Tensor, generator: torch.Generator | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One corrective click per mask from the error region of a prediction.

    Args:
        pred, gt: (K, h, w) bool at the same (low) resolution.
        scale: input-frame pixels per low-res pixel.
    Returns:
        xy (K, 1, 2) in the input frame, at the centre of the chosen low-res cell, and labels
        (K, 1): 1 on a missed pixel, 0 on a false positive, -1 (padding, ignored by the
        prompt encoder) when the prediction is perfect.
    """
    error = pred ^ gt
    xy, ok = sample_from_regions(error, generator)
    ix, iy = xy[:, 0].long(), xy[:, 1].long()
    positive = gt[torch.arange(gt.shape[0]), iy, ix]
    labels = torch.where(ok, positive.long(), torch.full_like(positive, -1, dtype=torch.long))
    return cell_centre(xy, scale)[:, None, :], labels[:, None]


def cell_centre(xy: torch.Tensor, scale: float) -> torch.Tensor:
    """Low-res cell indices → the input-frame click at the cell's centre: cell ``i`` spans
    input pixels ``[i·scale, (i+1)·scale)``, whose centre is the click ``i·scale + (scale − 1)/2``
    (the prompt encoder adds the last 0.5)."""
    return xy * scale + (scale - 1) / 2
