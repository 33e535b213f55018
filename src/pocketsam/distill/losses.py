"""Distillation losses (MobileSAM's decoupled and TinySAM's full-stage distillation).

All per-sample losses return one value per row so that hard mask weighting can reweight
them before the mean.

* :func:`embedding_loss`: mean squared error between student and teacher image
  embeddings, the student's resized onto the teacher's grid when the grids differ
  (area-averaged when the student's is finer, bilinear when coarser); with ``detail``,
  plus that weight times the same measure of the error's fine part (:func:`fine_part`).
* :func:`token_loss`: mean squared error between the mask decoder's output tokens (the IoU
  token and the mask tokens after the two-way transformer, which the IoU head and the
  hypernetworks read), per prompt.
* Both take ``distance``: ``"l2"`` (squared error, MobileSAM's) or ``"l1"`` (absolute
  error, what TinySAM's paper uses for its feature losses: squared differences of the
  features were too small to optimise well, it says).
* :func:`logit_loss`: binary cross-entropy of the student's mask logits against the
  teacher's probabilities ``sigmoid(teacher logits)`` (the Bernoulli form of Hinton's soft
  targets), per prompt, averaged over pixels and mask outputs; the student's low-res grid
  is resized onto the teacher's when they differ.
* :func:`hard_mask_weights`: ``w_i = (1 + γ·d_i) / mean_j(1 + γ·d_j)`` with
  ``d_i = 1 − IoU(student mask i > 0, teacher mask i > 0)``: prompts the student gets
  wrong weigh up to ``1 + γ`` times as much as ones it already matches, and the mean
  weight stays 1, so the loss scale (and the learning rate that suits it) is unchanged.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """(B, C, h, w) → (B, C, *size): area averages when shrinking (a finer student grid is
    averaged over each teacher cell, not aliased), bilinear when growing; ``x`` itself
    when it already fits."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if size[0] <= x.shape[-2] and size[1] <= x.shape[-1]:
        return F.interpolate(x, size=tuple(size), mode="area")
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


DISTANCES = ("l2", "l1")


def distance_per_row(err: torch.Tensor, distance: str = "l2") -> torch.Tensor:
    """(N, ...) error → (N,) its mean square (``l2``) or mean absolute value (``l1``)."""
    return (err.pow(2) if distance == "l2" else err.abs()).flatten(1).mean(1)


def _loss_and_mse(err: torch.Tensor, distance: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, ...) error → (N,) its ``distance`` and (N,) its mean square (the same tensor for ``l2``)."""
    mse = distance_per_row(err)
    return (mse if distance == "l2" else distance_per_row(err, distance)), mse


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor, detail: float = 0.0, distance: str = "l2") -> torch.Tensor:
    """(B, C, h, w) and (B, C, H, W) → (B,) the error's ``distance`` on the teacher's grid,
    plus ``detail`` times that of its fine part (:func:`fine_part`)."""
    return embedding_loss_and_mse(student, teacher, detail, distance)[0]


def embedding_loss_and_mse(
    student: torch.Tensor, teacher: torch.Tensor, detail: float = 0.0, distance: str = "l2"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) :func:`embedding_loss` and (B,) the plain mean squared error (what a step logs),
    from one computation of the error."""
    err = resize_to(student.float(), teacher.shape[-2:]) - teacher.float()
    loss, mse = _loss_and_mse(err, distance)
    if not detail:
        return loss, mse
    return loss + detail * distance_per_row(fine_part(err), distance), mse


def fine_part(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → the same less its 3×3 local mean (edges replicated): what changes
    from one cell to the next."""
    return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def token_loss(student: torch.Tensor, teacher: torch.Tensor, distance: str = "l2") -> torch.Tensor:
    """(N, T, C) decoder output tokens of both → (N,) their error's ``distance``."""
    return token_loss_and_mse(student, teacher, distance)[0]


def token_loss_and_mse(
    student: torch.Tensor, teacher: torch.Tensor, distance: str = "l2"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) :func:`token_loss` and (N,) the plain mean squared error (what a step logs),
    from one computation of the error."""
    return _loss_and_mse(student.float() - teacher.float(), distance)


def logit_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """(N, M, h, w) student and (N, M, H, W) teacher mask logits → (N,) soft-target BCE."""
    s = resize_to(student.float(), teacher.shape[-2:])
    return F.binary_cross_entropy_with_logits(s, teacher.float().sigmoid(), reduction="none").flatten(1).mean(1)


def mask_disagreement(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 − IoU of (N, H, W) logits thresholded at 0; two empty masks agree (0)."""
    s, t = (student > 0).flatten(1), (teacher > 0).flatten(1)
    inter = (s & t).sum(1).float()
    union = (s | t).sum(1).float()
    return torch.where(union > 0, 1 - inter / union.clamp(min=1), torch.zeros_like(union))


def hard_mask_weights(student: torch.Tensor, teacher: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """(N, H, W) student and teacher logits of the same prompts → (N,) weights with mean 1
    (see the module docstring); detached: the weights steer the loss, they are not learned."""
    d = mask_disagreement(student.detach(), teacher.detach())
    w = 1 + gamma * d
    return w / w.mean()
