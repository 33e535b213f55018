"""The one sample type every pocketsam data reader returns.

A :class:`Sample` is an image file plus its instances; an :class:`Instance` keeps its
segmentation as a COCO RLE and decodes the binary mask only when :attr:`Instance.mask`
is read (SA-1B images carry ~100 masks each; most consumers only need a few).

:func:`segmentation_to_rle` is the single place that turns any COCO-style segmentation
(polygons, uncompressed RLE, compressed RLE with ``counts`` as ``str`` or ``bytes``) into
a compressed RLE, validating it on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from pocketsam.errors import InputError
from pocketsam.io import load_image


def check_file_name(file_name: str, where: str) -> None:
    """An annotation file's image ``file_name`` must name a file inside the data folder:
    a relative path (on POSIX and Windows alike) without ``..`` parts, so that a data set
    cannot make a reader open files elsewhere (``../x.jpg``, ``/etc/passwd``).

    Raises:
        InputError: ``where`` (e.g. "'a.json': image.file_name") and the value.
    """
    inside = "\0" not in file_name
    for flavour in (PurePosixPath, PureWindowsPath):
        path = flavour(file_name)
        inside = inside and not (path.is_absolute() or path.anchor or ".." in path.parts)
    if not inside:
        raise InputError(
            f"{where} {file_name!r} points outside the data folder",
            "file_name must be a path relative to the data folder, without '..' (e.g. \"sa_1.jpg\")",
        )


def segmentation_to_rle(seg: Any, height: int, width: int, where: str) -> dict[str, Any]:
    """Compressed COCO RLE (``counts`` as ``bytes``) of any COCO segmentation.

    Args:
        seg: a list of polygons (each a flat ``[x1, y1, x2, y2, ...]`` list), an
            uncompressed RLE (``{"size": [h, w], "counts": [int, ...]}``) or a compressed
            RLE (``counts`` a ``str`` or ``bytes``).
        height, width: the image size; RLE sizes must match it.
        where: a description of the annotation for error messages, e.g.
            ``"annotation 7 in 'a.json'"``.
    Raises:
        InputError: the segmentation is malformed or does not fit the image.
    """
    if isinstance(seg, list):
        if not seg:
            raise InputError(f"{where}: empty polygon list", "give at least one polygon or an RLE")
        polys = []
        for poly in seg:
            if (
                not isinstance(poly, (list, tuple))
                or len(poly) < 6
                or len(poly) % 2
                or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in poly)
            ):
                raise InputError(
                    f"{where}: malformed polygon (need a flat list of >= 3 finite x,y pairs)",
                    "fix or remove the annotation",
                )
            polys.append([float(v) for v in poly])
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise InputError(
            f"{where}: segmentation must be a polygon list or an RLE dict with 'size' and 'counts'",
            "fix or remove the annotation",
        )
    size = seg["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) for s in size)):
        raise InputError(f"{where}: RLE 'size' must be [height, width]", "fix the annotation")
    if list(size) != [height, width]:
        raise InputError(
            f"{where}: RLE size {list(size)} does not match the image size [{height}, {width}]",
            "the annotation belongs to another image or the image size is wrong",
        )
    counts = seg["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
            raise InputError(
                f"{where}: uncompressed RLE counts must be non-negative integers summing to "
                f"height*width = {height * width}",
                "fix the annotation",
            )
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    if isinstance(counts, str):
        counts = counts.encode("ascii", errors="replace")
    if not isinstance(counts, bytes):
        raise InputError(f"{where}: RLE 'counts' must be a string or a list of integers", "fix the annotation")
    rle = {"size": [height, width], "counts": counts}
    # Validate: decoding a corrupt string can give a wrong total length; pycocotools'
    # area of a well-formed RLE never exceeds h*w and decoding must not raise.
    try:
        area = int(mask_utils.area(rle))
    except Exception as exc:  # pycocotools raises assorted errors on garbage
        raise InputError(f"{where}: corrupt compressed RLE ({exc})", "fix the annotation") from None
    if not 0 <= area <= height * width or not _rle_length_ok(counts, height * width):
        raise InputError(f"{where}: corrupt compressed RLE (runs do not cover the image)", "fix the annotation")
    return rle


def _rle_length_ok(counts: bytes, total: int) -> bool:
    """Whether the runs of a compressed RLE string add up to ``total`` pixels.

    Decodes COCO's LEB128-like string format (6 data bits per char, offset 48, runs
    after the second stored as deltas from two runs back).
    """
    runs: list[int] = []
    p = 0
    n = len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                return False
            c = counts[p] - 48
            if c < 0 or c > 63:
                return False
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return False
        runs.append(x)
    return sum(runs) == total


@dataclass
class Instance:
    """One object of a :class:`Sample`.

    Attributes:
        id: annotation id from the file.
        rle: compressed COCO RLE (``counts`` bytes) of the object's mask.
        bbox: ``[x, y, w, h]`` as stored in the file (COCO convention).
        area: mask area in pixels as stored in the file.
        iscrowd: COCO crowd flag (always ``False`` for SA-1B).
        category_id: COCO category (``1`` for SA-1B, which has no classes).
        extra: any other per-annotation fields (``predicted_iou``, ``stability_score``,
            ``point_coords``, ``crop_box``...).
    """

    id: int
    rle: dict[str, Any]
    bbox: list[float]
    area: float
    iscrowd: bool = False
    category_id: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        """H×W bool mask, decoded from :attr:`rle` on each access (cache it if reused)."""
        return mask_utils.decode(self.rle).astype(bool)

    @property
    def rle_str(self) -> dict[str, Any]:
        """The RLE with ``counts`` as ``str`` (JSON-serialisable)."""
        counts = self.rle["counts"]
        return {"size": list(self.rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


@dataclass
class Sample:
    """One image and its instances.

    Attributes:
        image_path: the image file.
        height, width: image size in pixels, as declared by the annotation file.
        image_id: id from the annotation file.
        instances: the objects (see the reader for whether crowd regions are included).
    """

    image_path: Path
    height: int
    width: int
    image_id: int
    instances: list[Instance]

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (self.height, self.width)

    def load_image(self) -> np.ndarray:
        """The image as ``uint8`` H×W×3 RGB (via :func:`pocketsam.io.load_image`).

        Raises:
            InputError: unreadable image, or its size differs from the annotation's.
        """

        image = load_image(self.image_path)
        if image.shape[:2] != (self.height, self.width):
            raise InputError(
                f"image '{self.image_path}' is {image.shape[1]}x{image.shape[0]} but its "
                f"annotations say {self.width}x{self.height}",
                "the image and annotation files do not belong together",
            )
        return image

    def masks(self, include_crowd: bool = False) -> np.ndarray:
        """All instance masks stacked, N×H×W bool (crowd regions only if asked)."""
        inst = [i for i in self.instances if include_crowd or not i.iscrowd]
        if not inst:
            return np.zeros((0, self.height, self.width), bool)
        return np.moveaxis(mask_utils.decode([i.rle for i in inst]), -1, 0).astype(bool)
