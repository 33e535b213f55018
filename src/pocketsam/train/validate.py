"""Quick held-out mIoU during training (one centre click, and the tight box)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from pocketsam.masks import batched_mask_to_box, farthest_point


def interior_points(masks: torch.Tensor) -> torch.Tensor:
    """(K, H, W) bool → (K, 2) xy of the pixel farthest from each mask's boundary (the
    evaluation protocol's click, :func:`pocketsam.masks.farthest_point`), as integer
    pixel coordinates like every click (see :mod:`pocketsam.train.prompts`)."""
    out = [farthest_point(m) for m in masks.cpu().numpy()]
    return torch.tensor(out, dtype=torch.float32, device=masks.device)


@torch.no_grad()
def quick_miou(model, step_module, batch) -> dict[str, float]:
    """mIoU of 1-click (best of 3 by predicted IoU) and box prompts, at the input frame."""
    emb = step_module.encode(batch["image"], batch["size"])
    img_idx, mask_idx = batch["valid"].nonzero(as_tuple=True)
    gt = batch["masks"][img_idx, mask_idx]
    if len(gt) == 0:
        return {}
    pe = model.prompt_encoder.get_dense_pe()
    size = gt.shape[-2:]
    results = {}
    for name in ("point", "box"):
        if name == "point":
            pts = interior_points(gt)[:, None]
            prompt = ((pts, torch.ones(len(gt), 1, dtype=torch.long, device=gt.device)), None)
        else:
            prompt = (None, batched_mask_to_box(gt).float())
        sparse, dense = model.prompt_encoder(prompt[0], prompt[1], None)
        logits, iou = model.mask_decoder(emb[img_idx], pe, sparse, dense, multimask_output=name == "point")
        best = iou.argmax(1)
        chosen = logits[torch.arange(len(gt)), best][:, None]
        pred = F.interpolate(chosen.float(), size=size, mode="bilinear", align_corners=False)[:, 0] > 0
        inter = (pred & gt).flatten(1).sum(1).float()
        union = (pred | gt).flatten(1).sum(1).float().clamp(min=1)
        results[f"val_miou_{name}"] = float((inter / union).mean())
    return results
