"""The typed record of what a model was loaded from and how it runs: ``Sam.info``.

The loader (:func:`pocketsam.build_sam`) fills it; the runtime
(:func:`pocketsam.runtime.optimize`) gives each inference copy its own with ``speed`` set.
Nothing else is attached to a model from outside. Plain data: no behaviour lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SpeedPath:
    """How an inference copy runs."""

    mode: str
    """The speed mode the copy was made for (``default``, ``bf16``, ``int8``, ...)."""
    detail: str = ""
    """What runs it where the mode leaves a choice, e.g. ``ONNX Runtime QDQ encoder``."""
    chosen_by: Any = None
    """For ``fast``: the :class:`pocketsam.runtime.select.FastChoice` that picked ``mode``."""

    def describe(self) -> str:
        """One line for people, e.g. ``fast -> int8 (...)`` or ``int8 (torch ...): artifact``."""
        text = f"{self.mode} ({self.detail})" if self.detail else self.mode
        return f"fast -> {self.chosen_by.describe()}" if self.chosen_by is not None else text


@dataclass(frozen=True)
class ModelInfo:
    """Where a model came from and what it prefers."""

    source: str | None = None
    """The checkpoint file or artifact folder it was loaded from (None: built in code)."""
    int8: Any = None
    """The :class:`pocketsam.runtime.artifact.Int8Artifact` it was loaded from, if any."""
    preferred_mode: str | None = None
    """The speed mode :class:`pocketsam.SamPredictor` runs when none is asked for."""
    speed: SpeedPath | None = None
    """Set on inference copies only (:func:`pocketsam.runtime.optimize`)."""
