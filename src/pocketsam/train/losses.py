"""SAM's training losses: focal + dice on mask logits, MSE on the predicted IoU."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss per mask. logits/targets (..., H, W), targets in [0, 1] → (...)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss per mask. (..., H, W) → (...)."""
    prob = logits.sigmoid().flatten(-2)
    targets = targets.flatten(-2)
    inter = (prob * targets).sum(-1)
    return 1 - (2 * inter + eps) / (prob.sum(-1) + targets.sum(-1) + eps)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of thresholded logits (> 0) against targets (> 0.5). (..., H, W) → (...)."""
    pred = logits.flatten(-2) > 0
    gt = targets.flatten(-2) > 0.5
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sam_loss(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    targets: torch.Tensor,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    iou_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss for K masks with M candidate outputs each; the best candidate takes the mask loss.

    Args:
        logits: (K, M, H, W); iou_pred: (K, M); targets: (K, H, W) soft or binary.
    Returns:
        scalar loss and a dict of detached parts; ``parts["best"]`` is (K,) the chosen index.
    """
    t = targets[:, None].expand_as(logits)
    per_output = focal_weight * focal_loss(logits, t) + dice_weight * dice_loss(logits, t)  # (K, M)
    best = per_output.argmin(1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    mask_term = per_output[rows, best].mean()
    actual_iou = mask_iou(logits, t).detach()
    iou_term = F.mse_loss(iou_pred, actual_iou)
    loss = mask_term + iou_weight * iou_term
    parts = {"mask": mask_term.detach(), "iou_mse": iou_term.detach(), "iou": actual_iou[rows, best].mean(), "best": best}
    return loss, parts
