"""Segment everything, three ways.

* :class:`SamAutomaticMaskGenerator` — regular point grid (segment_anything, drop-in).
* :class:`SamHierarchicalMaskGenerator` — sparse grid first, dense grid only where
  nothing confident was found (TinySAM).
* :class:`ObjectAwareMaskGenerator` — one box prompt per object proposal (MobileSAMv2).

All three share the decode/filter loop in :mod:`pocketsam.everything._common` and the
mask utilities in :mod:`pocketsam.masks`, return segment_anything-style records and set
``last_stats`` after each call. :mod:`pocketsam.everything.modes` owns the mode names;
its :func:`make_generator` builds one by mode name, filling thresholds left out from the
checkpoint's recommendations. The generator classes and proposal sources are imported on
first use, so ``pocketsam.everything.modes`` stays free of torch.
"""

from pocketsam.everything.modes import GENERATORS, MODES, make_generator, resolve_settings

_LAZY = {
    "SamAutomaticMaskGenerator": "pocketsam.everything.grid",
    "SamHierarchicalMaskGenerator": "pocketsam.everything.hierarchical",
    "ObjectAwareMaskGenerator": "pocketsam.everything.object_aware",
    # the proposal sources live in pocketsam.proposals; kept reachable here for the generators' users
    "ProposalSource": "pocketsam.proposals.sources",
    "BoxesProposals": "pocketsam.proposals.sources",
    "CocoDetectionsProposals": "pocketsam.proposals.sources",
    "YoloProposals": "pocketsam.proposals.sources",
}

__all__ = [*_LAZY, "GENERATORS", "MODES", "make_generator", "resolve_settings"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'pocketsam.everything' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_LAZY[name]), name)
