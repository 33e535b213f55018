"""Everything about the "segment everything" modes, in one place: their names, the
generator of each, the thresholds each takes, which of them a checkpoint may fill in,
which settings change a result, and building a generator by mode name (used by the CLI,
the evaluation and the web app).

The settings that change a mode's masks are one typed, frozen object per mode
(:class:`GridSettings`, :class:`HierarchicalSettings`, :class:`BoxesSettings`), holding
the generators' defaults: what provenance records and resume compares.

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
from dataclasses import dataclass, fields
from typing import Any, Iterator, Mapping

from pocketsam.errors import InputError

COCO_FILE = "instances.json"
"""The COCO instances file of a folder run (beside the per-image results)."""

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

@dataclass(frozen=True)
class GridSettings:
    """The settings of grid prompting that change which masks come out, typed, with the
    generator's defaults (``points_per_batch``, the device, the speed mode and the output
    format change none). What a result's provenance records and resume compares."""

    points_per_side: int = 32
    crop_n_layers: int = 0
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0


@dataclass(frozen=True)
class HierarchicalSettings(GridSettings):
    """:class:`GridSettings` plus TinySAM's coverage threshold and pass-2 layout."""

    high_score_thresh: float = 8.5
    dense_layout: str = "tinysam"


@dataclass(frozen=True)
class BoxesSettings:
    """The settings of box prompting that change which masks come out. ``score_thresh``
    None: the proposal head's recommendation (recorded in the checkpoint, hashed into the
    provenance) or 0.4 for detections."""

    score_thresh: float | None = None
    pred_iou_thresh: float = 0.0
    stability_score_thresh: float = 0.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0


#: mode → its typed settings class.
SETTINGS: Mapping[str, type] = {"grid": GridSettings, "hierarchical": HierarchicalSettings, "boxes": BoxesSettings}

#: Generator settings that change which masks come out, per mode: the fields of :data:`SETTINGS`.
RESULT_SETTINGS = {mode: tuple(f.name for f in fields(cls)) for mode, cls in SETTINGS.items()}


def result_settings(mode: str, kwargs: Mapping[str, Any]) -> Any:
    """The typed settings (:data:`SETTINGS`) of ``mode`` in generator keyword arguments
    ``kwargs``; those left out are the defaults, other keywords are ignored."""
    cls = SETTINGS[check_mode(mode)]
    return cls(**{k: kwargs[k] for k in RESULT_SETTINGS[mode] if k in kwargs})


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
    return "boxes" if model.has_proposal_head else "hierarchical"


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
    """The default of result setting ``key`` of ``mode`` (:data:`SETTINGS`).

    Raises:
        KeyError: ``key`` is not one of ``mode``'s result settings.
    """
    if key not in RESULT_SETTINGS[check_mode(mode)]:
        raise KeyError(key)
    return getattr(SETTINGS[mode](), key)


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
