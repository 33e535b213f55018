"""The one click rule: which of SAM's mask outputs a prompt returns by default.

SAM's decoder gives, for every prompt, a *single-mask* output (token 0, trained for
unambiguous prompts) and three *multimask* outputs (trained for ambiguous ones: whole,
part, sub-part). SAM's guidance (its paper, README and notebooks) is:

* a single click is ambiguous: ask for the three multimask outputs and keep the one with
  the highest predicted IoU;
* several points, or a box (with or without points), are not: use the single-mask output.

pocketsam follows this rule everywhere a prompt is turned into *one* mask by default:
``pocketsam segment`` (without ``--multimask``, which returns all three), the web app
(server- and browser-side decoding) and the SAM-format ONNX decoder
(:mod:`pocketsam.export.onnx_sam`). The drop-in :meth:`pocketsam.SamPredictor.predict`
keeps segment_anything's exact semantics (``multimask_output`` as given); call
:func:`predict_prompt` on a predictor to apply the rule.

TinySAM's decoder (``multimask_only``) has an untrained single-mask token; its decoder
returns its best multimask output for a single-mask request, so the rule gives the best
multimask output for every prompt there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pocketsam.errors import InputError


@dataclass
class Prompts:
    """Validated prompts in original-image pixel coordinates.

    Attributes:
        points: list of ``(x, y)``; labels: one per point, 1 foreground / 0 background.
        boxes: ``(x0, y0, x1, y1)`` each; several boxes are one prompt each (no points then).
    """

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)

    def describe(self) -> str:
        parts = []
        if self.points:
            n_pos = sum(1 for lab in self.labels if lab == 1)
            n_neg = len(self.points) - n_pos
            desc = f"{len(self.points)} point{'s' * (len(self.points) != 1)}"
            if n_neg:
                desc += f" ({n_pos} foreground, {n_neg} background)"
            parts.append(desc)
        if self.boxes:
            parts.append("a box" if len(self.boxes) == 1 else f"{len(self.boxes)} boxes")
        return " + ".join(parts)


def check_prompts_inside(prompts: Prompts, width: int, height: int) -> None:
    """Points must lie on a pixel (0 <= x < W, 0 <= y < H); boxes within [0, W]×[0, H]."""
    size = f"{width}x{height} (width x height)"
    for i, (x, y) in enumerate(prompts.points):
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(
                f"point {i + 1} ({x:g},{y:g}) is outside the image, which is {size}",
                f"use 0 <= x < {width} and 0 <= y < {height}",
            )
    for i, (x0, y0, x1, y1) in enumerate(prompts.boxes):
        if not (0 <= x0 and 0 <= y0 and x1 <= width and y1 <= height):
            which = f"box {i + 1} " if len(prompts.boxes) > 1 else "box "
            raise InputError(
                f"{which}({x0:g},{y0:g},{x1:g},{y1:g}) goes outside the image, which is {size}",
                f"keep 0 <= x <= {width} and 0 <= y <= {height}",
            )


MAX_PROMPT_POINTS = 1024
"""Points in one prompt (one mask prediction): far above any useful prompt."""
MAX_PROMPT_BATCH = 4096
"""Prompts decoded in one batched call (each holds 3 low-res masks, 0.75 MiB, meanwhile)."""


def check_prompt_count(n_points: int = 0, n_prompts: int = 0) -> None:
    """Refuse a prompt with more than :data:`MAX_PROMPT_POINTS` points, or a batch of more
    than :data:`MAX_PROMPT_BATCH` prompts (``SamPredictor.predict``/``predict_torch``, the
    ``segment`` command, the server's ``/decode``).

    Args:
        n_points: points in one prompt (``point_coords.shape[-2]``).
        n_prompts: prompts decoded together (boxes, or the batch of point sets).
    Raises:
        InputError: naming the count and the bound.
    """
    if int(n_points) > MAX_PROMPT_POINTS:
        raise InputError(f"{int(n_points):,} points in one prompt; at most {MAX_PROMPT_POINTS} are allowed",
                         "a mask needs a few points (SAM was trained with up to about a dozen)")
    if int(n_prompts) > MAX_PROMPT_BATCH:
        raise InputError(f"{int(n_prompts):,} prompts in one call; at most {MAX_PROMPT_BATCH} are allowed",
                         "split them into several calls")


def check_prompt_arrays(point_coords: Any, box: Any, original_size: tuple[int, int]) -> None:
    """The rule of :func:`check_prompts_inside` for ``SamPredictor.predict``'s arrays
    (image pixels): a point off the image, or a box that is inverted or goes outside it, is
    one :class:`~pocketsam.errors.InputError` (also a ``ValueError``), as on the command
    line and in the web app.

    Args:
        point_coords: ``N×2`` (x, y) or None; box: ``4`` / ``B×4`` xyxy or None.
        original_size: (H, W) of the image.
    """
    height, width = int(original_size[0]), int(original_size[1])
    for value in (point_coords, box):
        if value is not None and not np.isfinite(np.asarray(value, np.float64)).all():
            return  # the predictor's own check says "NaN or infinite", which is the real problem
    prompts = Prompts()
    if point_coords is not None:
        prompts.points = [(float(x), float(y)) for x, y in np.asarray(point_coords, np.float64).reshape(-1, 2)]
    if box is not None:
        for x0, y0, x1, y1 in np.asarray(box, np.float64).reshape(-1, 4):
            if not (x1 > x0 and y1 > y0):
                raise InputError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) is empty or inverted",
                                 "give x0 < x1 and y0 < y1 (x0, y0 top left; x1, y1 bottom right)")
            prompts.boxes.append((float(x0), float(y0), float(x1), float(y1)))
    check_prompts_inside(prompts, width, height)


def default_multimask(num_points: int, has_box: bool) -> bool:
    """Whether a prompt of ``num_points`` clicks (foreground or background; no padding
    point counted) and maybe a box is ambiguous, i.e. is answered from the three multimask
    outputs: exactly one click and no box."""
    return int(num_points) == 1 and not has_box


def pick_output(masks: Any, scores: Any, multimask_requested: bool, low_res: Any = None) -> tuple[Any, Any, Any]:
    """Outputs decoded with ``multimask_output=True``: all of them when
    ``multimask_requested``, else the one with the highest predicted IoU (the mask axis is
    kept, with length 1).

    Args:
        masks: ``C×H×W`` (one prompt) or ``B×C×H×W``, numpy or torch.
        scores: ``C`` or ``B×C``, the predicted IoUs.
        low_res: the low-res logits ``[B×]C×h×w``, picked likewise (or None).
    Returns:
        (masks, scores, low_res) with C = 1 unless ``multimask_requested``.
    """
    if multimask_requested:
        return masks, scores, low_res
    axis = scores.ndim - 1  # the mask axis, in scores and (the same position) in masks
    if isinstance(scores, np.ndarray):
        best = np.argmax(scores, axis=axis)[..., None]
        pick = lambda a, b=best: np.take_along_axis(a, b.reshape(b.shape + (1,) * (a.ndim - b.ndim)), axis=axis)  # noqa: E731
    else:
        best = scores.argmax(dim=axis, keepdim=True)

        def pick(a, b=best):
            index = b.reshape(b.shape + (1,) * (a.ndim - b.ndim)).expand(*b.shape, *a.shape[b.ndim:])
            return a.gather(axis, index.to(a.device))
    return pick(masks), pick(scores), (None if low_res is None else pick(low_res))


def predict_prompt(predictor: Any, point_coords: Any = None, point_labels: Any = None, box: Any = None,
                   mask_input: Any = None, multimask_output: bool = False,
                   return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`SamPredictor.predict` under the click rule: one mask (C = 1) chosen by
    :func:`default_multimask` / :func:`pick_output`, or all three with
    ``multimask_output=True`` (as ``pocketsam segment --multimask``).

    Returns:
        masks C×H×W, scores C, low-res logits C×L×L, as :meth:`SamPredictor.predict`.
    """
    num_points = 0 if point_coords is None else int(np.asarray(point_coords).size // 2)
    multimask = multimask_output or default_multimask(num_points, box is not None)
    masks, scores, low_res = predictor.predict(point_coords, point_labels, box, mask_input,
                                               multimask_output=multimask, return_logits=return_logits)
    if multimask:
        masks, scores, low_res = pick_output(masks, scores, multimask_output, low_res)
    return masks, scores, low_res


__all__ = ["default_multimask", "pick_output", "predict_prompt"]
