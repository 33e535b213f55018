"""Reader for COCO instance annotations (``instances_*.json``).

Segmentations may be polygons, uncompressed RLE (crowd regions) or compressed RLE. Crowd
annotations (``iscrowd=1``) are left out of :class:`CocoReader`'s samples by default —
they are not objects to prompt for — but :attr:`CocoReader.dataset` keeps the full file
content for :class:`pycocotools.cocoeval.COCOeval`, which needs crowd regions to ignore
detections on them.

Every problem with the file raises :class:`~pocketsam.errors.InputError` naming the file
and the offending annotation; nothing is silently dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from pocketsam.data.sample import Instance, Sample, check_file_name, segmentation_to_rle
from pocketsam.errors import InputError
from pocketsam.io import read_json


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_coco_json(path: str | Path) -> dict[str, Any]:
    """Read and structurally validate a COCO instances file.

    Checks that ``images`` and ``annotations`` are lists, images have integer ids and
    positive sizes, ids are unique, and every annotation points at a known image.
    Segmentations are validated later, when :class:`CocoReader` converts them.

    Raises:
        InputError: unreadable, not JSON, or malformed.
    """
    p = Path(path)
    data = read_json(p, "annotation file")
    name = f"'{p}'"
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise InputError(f"{name} is not a COCO instances file: need lists 'images' and 'annotations'", "pass an instances_*.json file")
    ids: set[int] = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            raise InputError(f"{name}: images[{i}] has no integer 'id'", "fix the file")
        for key in ("width", "height"):
            if not _is_int(img.get(key)) or img[key] <= 0:
                raise InputError(f"{name}: image {img['id']}: '{key}' must be a positive integer", "fix the file")
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise InputError(f"{name}: image {img['id']}: no 'file_name'", "fix the file")
        check_file_name(img["file_name"], f"{name}: image {img['id']}: file_name")
        if img["id"] in ids:
            raise InputError(f"{name}: duplicate image id {img['id']}", "fix the file")
        ids.add(img["id"])
    ann_ids: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            raise InputError(f"{name}: annotations[{i}] has no integer 'id'", "fix the file")
        if ann["id"] in ann_ids:
            raise InputError(f"{name}: duplicate annotation id {ann['id']}", "fix the file")
        ann_ids.add(ann["id"])
        if ann.get("image_id") not in ids:
            raise InputError(f"{name}: annotation {ann['id']} refers to unknown image_id {ann.get('image_id')!r}", "fix the file")
        if "segmentation" not in ann:
            raise InputError(f"{name}: annotation {ann['id']} has no 'segmentation'", "fix the file")
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1, True, False):
            raise InputError(f"{name}: annotation {ann['id']}: 'iscrowd' must be 0 or 1", "fix the file")
        if "bbox" in ann and not (isinstance(ann["bbox"], list) and len(ann["bbox"]) == 4 and all(_is_num(v) for v in ann["bbox"])):
            raise InputError(f"{name}: annotation {ann['id']}: 'bbox' must be [x, y, w, h] numbers", "fix the file")
        if "area" in ann and not _is_num(ann["area"]):
            raise InputError(f"{name}: annotation {ann['id']}: 'area' must be a number", "fix the file")
    data.setdefault("categories", [])
    return data


class CocoReader(Sequence[Sample]):
    """COCO images + instances file, as a sequence of :class:`Sample` (one per image,
    in file order, images without annotations included).

    Args:
        annotations: ``instances_*.json``.
        images: directory of the image files (``file_name`` is relative to it).
        include_crowd: keep ``iscrowd=1`` regions in the samples (default: no).
    Attributes:
        dataset: the whole validated JSON (crowd annotations included) — pass it to
            :func:`pocketsam.eval.metrics.coco_mask_ap` as ground truth.
    Raises:
        InputError: see :func:`load_coco_json`; malformed segmentations are reported
            when the file is opened, not later.
    """

    def __init__(self, annotations: str | Path, images: str | Path, include_crowd: bool = False) -> None:
        self.path = Path(annotations)
        self.image_dir = Path(images)
        if not self.image_dir.is_dir():
            raise InputError(f"image directory '{self.image_dir}' does not exist", "check the path")
        self.dataset = load_coco_json(self.path)
        self.include_crowd = include_crowd
        self._images = list(self.dataset["images"])
        by_image: dict[int, list[Instance]] = {img["id"]: [] for img in self._images}
        size = {img["id"]: (img["height"], img["width"]) for img in self._images}
        for ann in self.dataset["annotations"]:
            crowd = bool(ann.get("iscrowd", 0))
            h, w = size[ann["image_id"]]
            rle = segmentation_to_rle(ann["segmentation"], h, w, f"'{self.path}', annotation {ann['id']}")
            if crowd and not include_crowd:
                continue
            from pycocotools import mask as mask_utils

            bbox = ann.get("bbox") or [float(v) for v in mask_utils.toBbox(rle)]
            area = ann.get("area", None)
            if area is None:
                area = float(mask_utils.area(rle))
            by_image[ann["image_id"]].append(
                Instance(
                    id=ann["id"],
                    rle=rle,
                    bbox=[float(v) for v in bbox],
                    area=float(area),
                    iscrowd=crowd,
                    category_id=int(ann.get("category_id", 1)),
                )
            )
        self._instances = by_image

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        img = self._images[index]
        return Sample(
            image_path=self.image_dir / img["file_name"],
            height=img["height"],
            width=img["width"],
            image_id=img["id"],
            instances=list(self._instances[img["id"]]),
        )

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def index_of(self, image_id: int) -> int:
        """Position of the image with COCO id ``image_id``."""
        for i, img in enumerate(self._images):
            if img["id"] == image_id:
                return i
        raise KeyError(image_id)
