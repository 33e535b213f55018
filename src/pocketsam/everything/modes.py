"""Everything about the "segment everything" modes, in one place: their names, the
generator of each, the thresholds each takes, which of them a checkpoint may fill in,
which settings change a result, and building a generator by mode name (used by the CLI,
the evaluation and the web app).

Settings left out (``None``) come from what the checkpoint recommends
(:attr:`pocketsam.models.sam.Sam.everything_defaults`), else from the class defaults.
A model trained by pocketsam can record the thresholds that suit its IoU head and logits
(``pocketsam export --pred-iou-thresh ...``); SAM's defaults (0.88 / 0.95 / 8.5) are
calibrated for SAM's own heads and can discard every mask of a smaller model.

Free of torch at import (the generator classes are imported on first use), so that the
command line builds its parsers from :data:`MODES` without loading torch.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Iterator, Mapping

from pocketsam.errors import InputError

#: The modes, in the order the command line lists them.
MODES = ("grid", "hierarchical", "boxes")

_CLASSES = {
    "grid": ("pocketsam.everything.grid", "SamAutomaticMaskGenerator"),
    "hierarchical": ("pocketsam.everything.hierarchical", "SamHierarchicalMaskGenerator"),
    "boxes": ("pocketsam.everything.object_aware", "ObjectAwareMaskGenerator"),
}

#: The thresholds (:data:`pocketsam.thresholds.EVERYTHING_KEYS`) each mode's generator takes.
THRESHOLDS = {
    "grid": ("pred_iou_thresh", "stability_score_thresh"),
    "hierarchical": ("pred_iou_thresh", "stability_score_thresh", "high_score_thresh"),
    "boxes": ("pred_iou_thresh", "stability_score_thresh"),
}

#: Settings a checkpoint may fill in, per mode. Box prompts keep MobileSAMv2's "no
#: IoU/stability filter": a recommendation tuned on grid prompts does not carry over.
RECOMMENDABLE = {
    "grid": THRESHOLDS["grid"],
    "hierarchical": THRESHOLDS["hierarchical"],
    "boxes": (),
}

#: Generator settings that change which masks come out, per mode (``points_per_batch``,
#: the device, the speed mode and the output format do not).
RESULT_SETTINGS = {
    "grid": ("points_per_side", "crop_n_layers", "pred_iou_thresh", "stability_score_thresh", "box_nms_thresh",
             "min_mask_region_area"),
    "hierarchical": ("points_per_side", "crop_n_layers", "pred_iou_thresh", "stability_score_thresh",
                     "high_score_thresh", "box_nms_thresh", "min_mask_region_area", "dense_layout"),
    "boxes": ("score_thresh", "pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "min_mask_region_area"),
}


class _Generators(Mapping[str, type]):
    """mode → generator class, each imported when first asked for."""

    def __getitem__(self, mode: str) -> type:
        module, name = _CLASSES[mode]
        return getattr(importlib.import_module(module), name)

    def __iter__(self) -> Iterator[str]:
        return iter(MODES)

    def __len__(self) -> int:
        return len(MODES)


#: mode → generator class (a mapping over :data:`MODES`).
GENERATORS: Mapping[str, type] = _Generators()


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`.

    Raises:
        InputError: naming the modes.
    """
    if mode not in MODES:
        raise InputError(f"unknown mode '{mode}'", f"use one of {', '.join(MODES)}")
    return mode


def model_mode(model: Any) -> str:
    """The mode that needs nothing but the model (the web app's Everything button): ``boxes``
    for a model with its own proposal head, else ``hierarchical``."""
    return "boxes" if getattr(model, "has_proposal_head", False) else "hierarchical"


def misplaced_thresholds(mode: str, given: Mapping[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """The thresholds in ``given`` (not ``None``) that ``mode`` does not take, each with the
    modes that do: ``[("high_score_thresh", ("hierarchical",))]``."""
    return [(k, tuple(m for m in MODES if k in THRESHOLDS[m]))
            for k, v in given.items() if v is not None and k not in THRESHOLDS[check_mode(mode)]]


def check_proposals(mode: str, has_boxes: bool, has_proposal_head: bool) -> None:
    """Box prompts need proposals: given boxes (a detections file) or the checkpoint's
    proposal head.

    Raises:
        InputError: ``mode`` is ``boxes`` and there are neither.
    """
    if check_mode(mode) == "boxes" and not has_boxes and not has_proposal_head:
        raise InputError(
            "--mode boxes needs proposals: this checkpoint has no proposal head",
            "pass --boxes DETECTIONS.json (COCO results with box proposals), or add a head with "
            "`pocketsam train-proposals`",
        )


def default_setting(mode: str, key: str) -> Any:
    """The default of constructor argument ``key`` of ``mode``'s generator (or of the class
    it hands its other arguments to)."""
    for klass in GENERATORS[check_mode(mode)].__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        param = inspect.signature(init).parameters.get(key)
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    raise KeyError(key)


def resolve_settings(mode: str, model: Any, **settings: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """Generator keyword arguments for ``mode``: the given (non-``None``) settings, plus the
    model's recommendations for the ones left out.

    Returns:
        (kwargs, from_model) — ``from_model`` lists the settings taken from the checkpoint.
    """
    recommended = getattr(getattr(model, "model", model), "everything_defaults", None) or {}  # a Sam or a predictor
    return with_recommendations(mode, recommended, **settings)


def with_recommendations(mode: str, recommended: Mapping[str, float], **settings: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """:func:`resolve_settings` with the checkpoint's recommendations given as a mapping
    (e.g. read from the file's metadata before any model is built).

    Returns:
        (kwargs, from_model) — ``from_model`` lists the settings taken from ``recommended``.
    """
    check_mode(mode)
    kwargs = {k: v for k, v in settings.items() if v is not None}
    from_model = {k: recommended[k] for k in RECOMMENDABLE[mode] if k not in kwargs and k in recommended}
    return {**kwargs, **from_model}, from_model


def make_generator(mode: str, model: Any, **settings: Any) -> Any:
    """The generator of ``mode`` for ``model`` (a ``Sam`` or a ``SamPredictor``; see
    :func:`resolve_settings`)."""
    kwargs, _ = resolve_settings(mode, model, **settings)
    return GENERATORS[mode](model, **kwargs)
