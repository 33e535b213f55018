"""Reader for the SA-1B layout (also what ``pocketsam data synth`` writes).

A directory holds, per image, ``<name>.jpg`` and ``<name>.json``; the JSON is::

    {"image": {"image_id": int, "width": int, "height": int, "file_name": str},
     "annotations": [{"id": int, "segmentation": {"size": [h, w], "counts": str},
                      "bbox": [x, y, w, h], "area": number,
                      "predicted_iou"?: float, "stability_score"?: float,
                      "point_coords"?: [[x, y]], "crop_box"?: [x, y, w, h]}, ...]}

:class:`SA1BReader` lists the JSON files at construction and parses one only when its
sample is requested, so opening a directory of 10k images is instant. Every problem with
a file raises :class:`~pocketsam.errors.InputError` naming the file; no annotation is
silently skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from pocketsam.data.sample import Instance, Sample, check_file_name, segmentation_to_rle
from pocketsam.io import read_json
from pocketsam.errors import InputError

#: Per-annotation keys copied into :attr:`Instance.extra` when present.
EXTRA_KEYS = ("predicted_iou", "stability_score", "point_coords", "crop_box")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_sa1b(data: Any, json_path: Path, image_dir: Path | None = None) -> Sample:
    """Build a :class:`Sample` from the parsed content of one SA-1B JSON file.

    Args:
        data: the decoded JSON.
        json_path: the file it came from (for messages and to locate the image).
        image_dir: where the image lives (default: beside the JSON).
    Raises:
        InputError: missing/ill-typed fields, malformed segmentations, duplicate ids.
    """
    name = f"'{json_path}'"
    if not isinstance(data, dict) or not isinstance(data.get("image"), dict):
        raise InputError(f"{name} is not an SA-1B annotation file: no 'image' object", "expected keys 'image' and 'annotations'")
    img = data["image"]
    for key in ("width", "height"):
        if not _is_int(img.get(key)) or img[key] <= 0:
            raise InputError(f"{name}: image.{key} must be a positive integer, got {img.get(key)!r}", "fix the file")
    h, w = int(img["height"]), int(img["width"])
    image_id = img.get("image_id", img.get("id", 0))
    if not _is_int(image_id):
        raise InputError(f"{name}: image.image_id must be an integer, got {image_id!r}", "fix the file")
    file_name = img.get("file_name", json_path.with_suffix(".jpg").name)
    if not isinstance(file_name, str) or not file_name:
        raise InputError(f"{name}: image.file_name must be a non-empty string", "fix the file")
    check_file_name(file_name, f"{name}: image.file_name")
    anns = data.get("annotations", None)
    if not isinstance(anns, list):
        raise InputError(f"{name}: 'annotations' must be a list", "use [] for an image without objects")
    instances: list[Instance] = []
    seen: set[int] = set()
    for i, ann in enumerate(anns):
        where = f"{name}, annotation #{i}"
        if not isinstance(ann, dict):
            raise InputError(f"{where} is not an object", "fix the file")
        ann_id = ann.get("id", i)
        if not _is_int(ann_id):
            raise InputError(f"{where}: 'id' must be an integer", "fix the file")
        if ann_id in seen:
            raise InputError(f"{where}: duplicate annotation id {ann_id}", "ids must be unique within an image")
        seen.add(ann_id)
        if "segmentation" not in ann:
            raise InputError(f"{where}: no 'segmentation'", "fix the file")
        rle = segmentation_to_rle(ann["segmentation"], h, w, where)
        bbox = ann.get("bbox")
        if bbox is None:
            from pycocotools import mask as mask_utils

            bbox = [float(v) for v in mask_utils.toBbox(rle)]
        elif not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(v) for v in bbox)):
            raise InputError(f"{where}: 'bbox' must be [x, y, w, h] numbers", "fix the file")
        area = ann.get("area")
        if area is None:
            from pycocotools import mask as mask_utils

            area = float(mask_utils.area(rle))
        elif not _is_num(area) or area < 0:
            raise InputError(f"{where}: 'area' must be a non-negative number", "fix the file")
        extra = {k: ann[k] for k in EXTRA_KEYS if k in ann}
        instances.append(Instance(id=int(ann_id), rle=rle, bbox=[float(v) for v in bbox], area=float(area), extra=extra))
    base = image_dir if image_dir is not None else json_path.parent
    return Sample(image_path=base / file_name, height=h, width=w, image_id=int(image_id), instances=instances)


def read_sa1b_json(json_path: str | Path, image_dir: str | Path | None = None) -> Sample:
    """Read one SA-1B annotation file.

    Raises:
        InputError: unreadable file, invalid JSON, or any malformed content.
    """
    p = Path(json_path)
    data = read_json(p, "annotation file")
    return parse_sa1b(data, p, Path(image_dir) if image_dir is not None else None)


class SA1BReader(Sequence[Sample]):
    """A directory in SA-1B layout, as a lazy sequence of :class:`Sample`.

    Args:
        root: directory holding ``*.json`` + images (searched non-recursively).
        check_images: raise at construction if an annotation's image file is missing
            (costs one JSON parse per file; off by default, then the check happens when
            the sample is read).
    Raises:
        InputError: ``root`` is not a directory or holds no ``*.json`` file.
    """

    def __init__(self, root: str | Path, check_images: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"data directory '{self.root}' does not exist or is not a directory", "check the path")
        self.files = sorted(self.root.glob("*.json"))
        if not self.files:
            raise InputError(
                f"'{self.root}' holds no SA-1B annotation files (*.json)",
                "generate some with `pocketsam data synth --out DIR` or point at an SA-1B folder",
            )
        if check_images:
            for i in range(len(self)):
                self[i]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        sample = read_sa1b_json(self.files[index])
        if not sample.image_path.is_file():
            raise InputError(f"'{self.files[index]}' names image '{sample.image_path}', which does not exist", "restore the image or remove its JSON file")
        return sample

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]
