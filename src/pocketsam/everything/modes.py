"""One way to build a "segment everything" generator by mode name, used by the CLI and by
the evaluation: settings left out (``None``) come from what the checkpoint recommends
(:attr:`pocketsam.models.sam.Sam.everything_defaults`), else from the class defaults.

A model trained by pocketsam can record the thresholds that suit its IoU head and logits
(``pocketsam export --pred-iou-thresh ...``); SAM's defaults (0.88 / 0.95 / 8.5) are
calibrated for SAM's own heads and can discard every mask of a smaller model.
"""

from __future__ import annotations

from typing import Any

from pocketsam.errors import InputError
from pocketsam.everything.grid import SamAutomaticMaskGenerator
from pocketsam.everything.hierarchical import SamHierarchicalMaskGenerator
from pocketsam.everything.object_aware import ObjectAwareMaskGenerator

GENERATORS = {
    "grid": SamAutomaticMaskGenerator,
    "hierarchical": SamHierarchicalMaskGenerator,
    "boxes": ObjectAwareMaskGenerator,
}

#: Settings a checkpoint may fill in, per mode. Box prompts keep MobileSAMv2's "no
#: IoU/stability filter": a recommendation tuned on grid prompts does not carry over.
RECOMMENDABLE = {
    "grid": ("pred_iou_thresh", "stability_score_thresh"),
    "hierarchical": ("pred_iou_thresh", "stability_score_thresh", "high_score_thresh"),
    "boxes": (),
}


def resolve_settings(mode: str, model: Any, **settings: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """Generator keyword arguments for ``mode``: the given (non-``None``) settings, plus the
    model's recommendations for the ones left out.

    Returns:
        (kwargs, from_model) — ``from_model`` lists the settings taken from the checkpoint.
    """
    if mode not in GENERATORS:
        raise InputError(f"unknown mode '{mode}'", f"use one of {', '.join(GENERATORS)}")
    kwargs = {k: v for k, v in settings.items() if v is not None}
    recommended = getattr(model, "everything_defaults", None) or {}
    from_model = {k: recommended[k] for k in RECOMMENDABLE[mode] if k not in kwargs and k in recommended}
    return {**kwargs, **from_model}, from_model


def make_generator(mode: str, model: Any, **settings: Any) -> Any:
    """The generator of ``mode`` for ``model`` (see :func:`resolve_settings`)."""
    kwargs, _ = resolve_settings(mode, model, **settings)
    return GENERATORS[mode](model, **kwargs)
