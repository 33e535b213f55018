"""SA-1B and COCO readers: every segmentation encoding, crowd handling, empty images and
clear errors for malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from pocketsam.data import CocoReader, SA1BReader, read_sa1b_json
from pocketsam.errors import InputError
from pocketsam.masks import encode_rle

H, W = 20, 30


def _square(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _uncompressed(mask: np.ndarray) -> dict:
    """Uncompressed (list) COCO RLE, column-major runs starting with zeros."""
    flat = mask.T.ravel().astype(np.uint8)
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


def _write_image(path: Path, h: int = H, w: int = W) -> None:
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


def _sa1b(tmp_path: Path, anns: list, name: str = "sa_1", image: dict | None = None) -> Path:
    _write_image(tmp_path / f"{name}.jpg")
    meta = {"image": image or {"image_id": 1, "width": W, "height": H, "file_name": f"{name}.jpg"}, "annotations": anns}
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(meta))
    return p


# --------------------------------------------------------------------------- SA-1B


def test_sa1b_reads_compressed_rle_and_extras(tmp_path):
    m = _square(2, 3, 10, 12)
    ann = {"id": 7, "segmentation": encode_rle(m), "bbox": [3, 2, 9, 8], "area": int(m.sum()),
           "predicted_iou": 0.9, "stability_score": 0.95, "point_coords": [[5.0, 5.0]], "crop_box": [0, 0, W, H]}
    _sa1b(tmp_path, [ann])
    reader = SA1BReader(tmp_path)
    assert len(reader) == 1
    s = reader[0]
    assert s.size == (H, W) and s.image_id == 1 and s.image_path == tmp_path / "sa_1.jpg"
    inst = s.instances[0]
    assert inst.id == 7 and not inst.iscrowd and inst.bbox == [3, 2, 9, 8] and inst.area == m.sum()
    assert inst.extra["predicted_iou"] == 0.9 and inst.extra["point_coords"] == [[5.0, 5.0]]
    np.testing.assert_array_equal(inst.mask, m)
    assert s.load_image().shape == (H, W, 3)


def test_sa1b_uncompressed_rle_and_polygon(tmp_path):
    m = _square(0, 0, 5, 5)
    anns = [
        {"id": 1, "segmentation": _uncompressed(m)},
        {"id": 2, "segmentation": [[10, 10, 20, 10, 20, 15, 10, 15]]},
    ]
    s = read_sa1b_json(_sa1b(tmp_path, anns))
    np.testing.assert_array_equal(s.instances[0].mask, m)
    # missing bbox/area are computed from the mask
    assert s.instances[0].area == 25 and s.instances[0].bbox == [0, 0, 5, 5]
    poly = s.instances[1].mask
    assert poly[12, 15] and not poly[5, 5] and 40 <= poly.sum() <= 70


def test_sa1b_empty_image(tmp_path):
    _sa1b(tmp_path, [])
    s = SA1BReader(tmp_path)[0]
    assert s.instances == [] and s.masks().shape == (0, H, W)


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"annotations": []}), "no 'image' object"),
        (json.dumps({"image": {"image_id": 1, "width": 0, "height": H}, "annotations": []}), "image.width"),
        (json.dumps({"image": {"image_id": 1, "width": W, "height": H}, "annotations": {}}), "'annotations' must be a list"),
        (json.dumps({"image": {"image_id": 1, "width": W, "height": H}, "annotations": [{"id": 1}]}), "no 'segmentation'"),
        (json.dumps({"image": {"image_id": 1, "width": W, "height": H},
                     "annotations": [{"id": 1, "segmentation": {"size": [H + 1, W], "counts": "abc"}}]}), "does not match the image size"),
        (json.dumps({"image": {"image_id": 1, "width": W, "height": H},
                     "annotations": [{"id": 1, "segmentation": {"size": [H, W], "counts": "0000"}}]}), "corrupt compressed RLE"),
        (json.dumps({"image": {"image_id": 1, "width": W, "height": H},
                     "annotations": [{"id": 1, "segmentation": {"size": [H, W], "counts": [1, 2]}}]}), "uncompressed RLE"),
        (json.dumps({"image": {"image_id": 1, "width": W, "height": H},
                     "annotations": [{"id": 1, "segmentation": [[1, 2, 3]]}]}), "malformed polygon"),
        (json.dumps({"image": {"image_id": 1, "width": W, "height": H},
                     "annotations": [{"id": 1, "segmentation": [[0, 0, 5, 0, 5, 5]], "bbox": [1, 2]}]}), "'bbox'"),
        (json.dumps({"image": {"image_id": 1, "width": W, "height": H},
                     "annotations": [{"id": 1, "segmentation": [[0, 0, 5, 0, 5, 5]]}, {"id": 1, "segmentation": [[0, 0, 5, 0, 5, 5]]}]}),
         "duplicate annotation id"),
    ],
)
def test_sa1b_malformed_files_name_file_and_problem(tmp_path, content, needle):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(InputError) as exc:
        read_sa1b_json(p)
    assert needle in str(exc.value) and "bad.json" in str(exc.value)


def test_sa1b_directory_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        SA1BReader(tmp_path / "missing")
    with pytest.raises(InputError, match="no SA-1B annotation files"):
        SA1BReader(tmp_path)
    (tmp_path / "sa_9.json").write_text(json.dumps({"image": {"image_id": 9, "width": W, "height": H, "file_name": "sa_9.jpg"}, "annotations": []}))
    with pytest.raises(InputError, match="sa_9.jpg"):
        SA1BReader(tmp_path)[0]


def test_sample_image_size_mismatch(tmp_path):
    _sa1b(tmp_path, [], image={"image_id": 1, "width": W + 2, "height": H, "file_name": "sa_1.jpg"})
    with pytest.raises(InputError, match="annotations say"):
        SA1BReader(tmp_path)[0].load_image()


# --------------------------------------------------------------------------- COCO


def _coco(tmp_path: Path, extra_anns: list | None = None) -> Path:
    for name in ("a.png", "b.png", "c.png"):
        _write_image(tmp_path / name)
    m1, m2, crowd = _square(0, 0, 8, 8), _square(10, 10, 20, 30), _square(0, 20, 6, 30)
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": W, "height": H},
            {"id": 2, "file_name": "b.png", "width": W, "height": H},
            {"id": 3, "file_name": "c.png", "width": W, "height": H},  # no annotations
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 8, 0, 8, 8, 0, 8]], "bbox": [0, 0, 8, 8], "area": 64, "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 2, "segmentation": _uncompressed(crowd), "bbox": [20, 0, 10, 6], "area": 60, "iscrowd": 1},
            {"id": 12, "image_id": 2, "category_id": 1, "segmentation": encode_rle(m2), "bbox": [10, 10, 20, 10], "area": 200, "iscrowd": 0},
            {"id": 13, "image_id": 2, "category_id": 1, "segmentation": {"size": [H, W], "counts": encode_rle(m1)["counts"]}, "iscrowd": 0},
        ] + (extra_anns or []),
        "categories": [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}],
    }
    p = tmp_path / "instances.json"
    p.write_text(json.dumps(data))
    return p


def test_coco_reader_formats_and_crowd(tmp_path):
    reader = CocoReader(_coco(tmp_path), tmp_path)
    assert len(reader) == 3
    a, b, c = reader[0], reader[1], reader[2]
    assert [i.id for i in a.instances] == [10]  # crowd excluded from samples
    assert a.instances[0].mask.sum() == 64
    assert [i.id for i in b.instances] == [12, 13]
    assert b.instances[1].area == 64 and b.instances[1].bbox == [0, 0, 8, 8]  # computed
    assert c.instances == []
    # crowd kept in the raw dataset for COCOeval, and on request
    assert any(ann.get("iscrowd") for ann in reader.dataset["annotations"])
    with_crowd = CocoReader(tmp_path / "instances.json", tmp_path, include_crowd=True)
    crowd = [i for i in with_crowd[0].instances if i.iscrowd]
    assert len(crowd) == 1 and crowd[0].mask.sum() == 60 and crowd[0].category_id == 2
    assert a.masks().shape == (1, H, W)


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d.pop("images"), "need lists 'images' and 'annotations'"),
        (lambda d: d["images"].append({"id": 1, "file_name": "x.png", "width": W, "height": H}), "duplicate image id 1"),
        (lambda d: d["annotations"].append({"id": 99, "image_id": 42, "segmentation": []}), "unknown image_id 42"),
        (lambda d: d["annotations"].append({"id": 10, "image_id": 1, "segmentation": []}), "duplicate annotation id 10"),
        (lambda d: d["annotations"].append({"id": 98, "image_id": 1}), "has no 'segmentation'"),
        (lambda d: d["annotations"].append({"id": 97, "image_id": 1, "segmentation": []}), "empty polygon list"),
        (lambda d: d["images"][0].pop("height"), "'height' must be a positive integer"),
    ],
)
def test_coco_malformed(tmp_path, mutate, needle):
    p = _coco(tmp_path)
    data = json.loads(p.read_text())
    mutate(data)
    p.write_text(json.dumps(data))
    with pytest.raises(InputError) as exc:
        CocoReader(p, tmp_path)
    assert needle in str(exc.value) and "instances.json" in str(exc.value)


def test_coco_missing_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        CocoReader(tmp_path / "nope.json", tmp_path)
    (tmp_path / "x.json").write_text("[1, 2")
    with pytest.raises(InputError, match="not valid JSON"):
        CocoReader(tmp_path / "x.json", tmp_path)


def test_polygon_matches_pycocotools(tmp_path):
    reader = CocoReader(_coco(tmp_path), tmp_path)
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[0, 0, 8, 0, 8, 8, 0, 8]], H, W))).astype(bool)
    np.testing.assert_array_equal(reader[0].instances[0].mask, ref)
