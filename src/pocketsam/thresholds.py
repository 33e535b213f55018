"""The "segment everything" thresholds a checkpoint may recommend: their names and the one rule
for their values. Free of torch, so that the command line can build its parsers without
importing it (``pocketsam --help`` stays instant)."""

from __future__ import annotations

import math
import warnings
from typing import Mapping

from pocketsam.errors import CheckpointWarning, InputError

EVERYTHING_KEYS = ("pred_iou_thresh", "stability_score_thresh", "high_score_thresh")
"""Settings a checkpoint may recommend to the "segment everything" generators."""
MOBILESAMV2_SCORE_THRESH = 0.4
"""MobileSAMv2's proposal score threshold (boxes mode): the default wherever a proposal
source recommends none."""
EVERYTHING_PREFIX = "everything."
"""Their prefix among a checkpoint's metadata keys (``everything.pred_iou_thresh``)."""


def check_everything_setting(key: str, value: object, name: str | None = None) -> float:
    """The one rule for the "segment everything" thresholds, wherever they come from
    (``everything`` / ``eval everything`` options, ``export`` options, a checkpoint's
    record): ``pred_iou_thresh`` and ``stability_score_thresh`` are finite numbers from
    -100 to 1 (a predicted IoU or stability score above 1 never occurs, so more would
    discard every mask); ``high_score_thresh`` is a finite mask logit.

    Args:
        name: how to call the setting in the message (default ``key``), e.g. ``--pred-iou-thresh``.
    Returns:
        the value as a float.
    Raises:
        InputError: an unknown key or an invalid value.
    """
    if key not in EVERYTHING_KEYS:
        raise InputError(f"unknown 'everything' setting '{key}'", f"use one of {', '.join(EVERYTHING_KEYS)}")
    name = name or key
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if key != "high_score_thresh" and not -100.0 <= value <= 1.0:
        raise InputError(f"{name} must be <= 1 (a number from -100 to 1), got {value:g}")
    return float(value)


def everything_defaults(meta: Mapping[str, float], source: str = "the checkpoint") -> dict[str, float]:
    """The automatic-mask-generation settings recommended in a checkpoint's metadata.

    A recorded value that :func:`check_everything_setting` refuses is left out (the
    generator's own default applies) with a :class:`CheckpointWarning`.
    """
    n = len(EVERYTHING_PREFIX)
    out: dict[str, float] = {}
    for k, v in meta.items():
        if k.startswith(EVERYTHING_PREFIX) and k[n:] in EVERYTHING_KEYS:
            try:
                out[k[n:]] = check_everything_setting(k[n:], v, f"the {k[n:]} recorded in {source}")
            except InputError as exc:
                warnings.warn(
                    f"{exc}: ignored, the generator's default is used (re-export it with "
                    f"`pocketsam export` and --drop-thresholds or a valid --{k[n:].replace('_', '-')})",
                    CheckpointWarning,
                    stacklevel=3,
                )
    return out


