"""Mask utilities shared by every part of pocketsam (predictor CLI, generators, eval).

COCO run-length encoding goes through pycocotools; everything else is vectorised torch or
numpy. One implementation of each operation lives here — callers never re-implement them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of one binary mask.

    Args:
        mask: H×W bool/uint8 array.
    Returns:
        ``{"size": [H, W], "counts": str}`` — JSON-serialisable (counts decoded to ASCII).
    """
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_rle`; also accepts uncompressed RLE (``counts`` a list)."""
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def mask_bbox_xywh(mask: np.ndarray) -> list[int]:
    """Tight box ``[x, y, w, h]`` (COCO convention, inclusive pixels) of a binary mask;
    ``[0, 0, 0, 0]`` for an empty one."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]
