"""pocketsam — efficient Segment Anything.

Drop-in for ``segment_anything``::

    from pocketsam import sam_model_registry, SamPredictor
    sam = sam_model_registry["vit_t"](checkpoint="mobile_sam.pt")
    predictor = SamPredictor(sam)

plus :func:`build_sam`, which reads the architecture from the checkpoint itself::

    from pocketsam import build_sam
    sam = build_sam(checkpoint="any_sam_family_checkpoint.pth")
"""

import os as _os
import sys as _sys

# OpenMP threads that finish an operation first spin-wait (up to ~300,000 iterations) for the
# others before sleeping. The decoder runs thousands of tiny operations per "everything"
# job, so on a machine whose cores are busy with other work every spin holds a core that
# the awaited thread needs: the same boxes job on dog.jpg took 56-84 s instead of 5 s on a
# loaded 2-vCPU Xeon (docs/speed.md). Waiting threads sleep instead unless the user chose
# otherwise. The OpenMP runtime reads this once, when torch loads it: import pocketsam
# first, or set OMP_WAIT_POLICY=PASSIVE yourself.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pocketsam.errors import PocketSamError  # noqa: E402
from pocketsam.version import __version__  # noqa: E402

_LAZY = {
    "build_sam": "pocketsam.runtime.load",
    "sam_model_registry": "pocketsam.runtime.load",
    "load_state_dict": "pocketsam.checkpoints",
    "SamPredictor": "pocketsam.predictor",
    "SamAutomaticMaskGenerator": "pocketsam.everything",
    "SamHierarchicalMaskGenerator": "pocketsam.everything",
    "ObjectAwareMaskGenerator": "pocketsam.everything",
}

__all__ = ["PocketSamError", "__version__", *_LAZY]


def __getattr__(name):  # lazy imports keep `import pocketsam` (and the CLI) light
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pocketsam' has no attribute {name!r}")
