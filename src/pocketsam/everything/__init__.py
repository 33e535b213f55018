"""Segment everything, three ways.

* :class:`SamAutomaticMaskGenerator` — regular point grid (segment_anything, drop-in).
* :class:`SamHierarchicalMaskGenerator` — sparse grid first, dense grid only where
  nothing confident was found (TinySAM).
* :class:`ObjectAwareMaskGenerator` — one box prompt per object proposal (MobileSAMv2).

All three share the filtering code in :mod:`pocketsam.everything._common` and the mask
utilities in :mod:`pocketsam.masks`, return segment_anything-style records and set
``last_stats`` after each call. :func:`make_generator` builds one by mode name, filling
thresholds left out from the checkpoint's recommendations.
"""

from pocketsam.everything.grid import SamAutomaticMaskGenerator
from pocketsam.everything.hierarchical import SamHierarchicalMaskGenerator
from pocketsam.everything.modes import GENERATORS, make_generator, resolve_settings
from pocketsam.everything.object_aware import ObjectAwareMaskGenerator
from pocketsam.everything.proposals import (
    BoxesProposals,
    CocoDetectionsProposals,
    ProposalSource,
    YoloProposals,
)

__all__ = [
    "SamAutomaticMaskGenerator",
    "SamHierarchicalMaskGenerator",
    "ObjectAwareMaskGenerator",
    "ProposalSource",
    "BoxesProposals",
    "CocoDetectionsProposals",
    "YoloProposals",
    "GENERATORS",
    "make_generator",
    "resolve_settings",
]
