"""One COCO *instances* file for the masks of many images.

:func:`coco_instances` turns the records of the "segment everything" generators (one list
per image, as :meth:`SamAutomaticMaskGenerator.generate` returns them or as
``pocketsam everything`` stores them in ``annotations.json``) into the COCO dataset
layout that pycocotools, COCO viewers and annotation tools read::

    {"info": {...}, "images": [{"id", "file_name", "height", "width"}],
     "annotations": [{"id", "image_id", "category_id", "segmentation" (compressed RLE),
                      "area", "bbox" [x, y, w, h], "score", "iscrowd": 0,
                      "predicted_iou", "stability_score"}],
     "categories": [{"id", "name"}]}

* ``score`` is the detection's score for box-prompted masks (the record's ``score``),
  else the mask's predicted IoU;
* ``category_id`` is the detection's category where the record has one, else 1, the
  class-agnostic category ``"object"``;
* RLEs are encoded by :mod:`pocketsam.masks` (pycocotools), whatever the records'
  ``output_mode`` was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pocketsam.io import write_json_atomic
from pocketsam.masks import coco_encode_rle, encode_rle

#: The category of masks that come without one (grid and hierarchical modes, proposals
#: without categories).
OBJECT_CATEGORY = {"id": 1, "name": "object"}


def coco_segmentation(segmentation: Any) -> dict[str, Any]:
    """A record's ``segmentation`` (binary mask, uncompressed or compressed RLE) as a
    compressed COCO RLE with a string ``counts``."""

    if isinstance(segmentation, np.ndarray):
        return encode_rle(segmentation)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return coco_encode_rle(segmentation)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
        counts = segmentation["counts"]
        return {"size": [int(v) for v in segmentation["size"]],
                "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
    raise ValueError(f"not a mask or an RLE: {type(segmentation).__name__}")


def image_ids(file_names: Sequence[str], detections: Any = None) -> list[int]:
    """COCO ids for images, in order: the ids a detections file gives them
    (:meth:`~pocketsam.proposals.sources.CocoDetections.image_key`), else their
    numeric file stems (COCO's ``000000397133.jpg`` → 397133), else 1..N; each rule only
    when it gives every image a distinct integer."""
    candidates = []
    if detections is not None:
        candidates.append([detections.image_key(n) for n in file_names])
    candidates.append([int(Path(n).stem) if Path(n).stem.isdigit() else None for n in file_names])
    for ids in candidates:
        if all(isinstance(i, int) and not isinstance(i, bool) for i in ids) and len(set(ids)) == len(ids):
            return list(ids)
    return list(range(1, len(file_names) + 1))


def coco_instances(
    images: Iterable[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
    category_names: Mapping[int, str] | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one COCO instances document.

    Args:
        images: ``(image, records)`` per image; ``image`` has ``id``, ``file_name``,
            ``height``, ``width``; ``records`` are generator records (``segmentation``,
            ``area``, ``bbox``, ``predicted_iou``, optional ``stability_score``, ``score``,
            ``category_id``).
        category_names: names of the category ids the records use (default: their id
            as text; id 1 without a name is ``"object"``).
        info: the document's ``info`` object.
    Returns:
        the document (JSON-serialisable); annotation ids run from 1 over all images.
    """
    names = dict(category_names or {})
    out_images, annotations, used = [], [], set()
    for image, records in images:
        out_images.append({k: image[k] for k in ("id", "file_name", "height", "width")})
        for rec in records:
            category = rec.get("category_id", OBJECT_CATEGORY["id"])
            used.add(category)
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image["id"],
                "category_id": category,
                "segmentation": coco_segmentation(rec["segmentation"]),
                "area": int(rec["area"]),
                "bbox": [float(v) for v in rec["bbox"]],
                "score": float(rec["score"] if "score" in rec else rec["predicted_iou"]),
                "iscrowd": 0,
                "predicted_iou": float(rec["predicted_iou"]),
            }
            if "stability_score" in rec:
                ann["stability_score"] = float(rec["stability_score"])
            annotations.append(ann)
    used = used or {OBJECT_CATEGORY["id"]}
    categories = [{"id": c, "name": names.get(c, OBJECT_CATEGORY["name"] if c == OBJECT_CATEGORY["id"] else str(c))}
                  for c in sorted(used)]
    return {"info": dict(info or {}), "images": out_images, "annotations": annotations, "categories": categories}


def write_coco_instances(path: str | Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`coco_instances`, written atomically to ``path`` (compact JSON). Returns the document."""

    doc = coco_instances(*args, **kwargs)
    write_json_atomic(doc, path, indent=None)
    return doc
