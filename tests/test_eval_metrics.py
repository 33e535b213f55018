"""Metrics on hand-computed cases: mask IoU, mIoU, AR@K, COCO mask AP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pocketsam.eval.metrics import (
    IOU_THRESHOLDS,
    average_recall,
    best_iou_per_gt,
    coco_mask_ap,
    mask_iou,
    miou,
    recall_at_thresholds,
    rle_iou,
)
from pocketsam.masks import batched_mask_to_box, encode_rle, farthest_point


def _box(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_iou_known_values():
    a = np.stack([_box(10, 10, 0, 0, 4, 4), _box(10, 10, 0, 0, 0, 0)])
    b = np.stack([_box(10, 10, 2, 0, 6, 4), _box(10, 10, 0, 0, 4, 4), _box(10, 10, 6, 6, 10, 10)])
    iou = mask_iou(a, b)
    # 4x4 squares overlapping in 2x4 = 8 px: 8 / (16 + 16 - 8) = 1/3
    np.testing.assert_allclose(iou, [[1 / 3, 1.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(rle_iou([encode_rle(m) for m in a], [encode_rle(m) for m in b]), iou)
    assert mask_iou(a, b[:0]).shape == (2, 0)
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((1, 5, 5), bool))


def test_mask_iou_chunking_matches_direct():
    rng = np.random.default_rng(0)
    a = rng.random((70, 16, 16)) < 0.4
    b = rng.random((5, 16, 16)) < 0.6
    direct = np.array([[(x & y).sum() / (x | y).sum() for y in b] for x in a])
    np.testing.assert_allclose(mask_iou(a, b, chunk=8), direct)


def test_miou():
    assert miou([0.5, 1.0, 0.0]) == pytest.approx(0.5)
    assert math.isnan(miou([]))


def test_average_recall_hand_computed():
    assert IOU_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    ious = np.array([[0.72, 0.1, 0.96], [0.5, 0.9, 0.0]])  # 2 GT x 3 proposals
    scores = [0.9, 0.5, 0.8]
    # top-1 by score = proposal 0: best IoUs 0.72 and 0.5 -> recall 5/10 and 1/10
    np.testing.assert_allclose(best_iou_per_gt(ious, scores, 1), [0.72, 0.5])
    assert average_recall(best_iou_per_gt(ious, scores, 1)) == pytest.approx(0.3)
    # top-2 = proposals 0 and 2: 0.96 (10/10) and 0.5 (1/10)
    assert average_recall(best_iou_per_gt(ious, scores, 2)) == pytest.approx(0.55)
    # all 3: 0.96 and 0.9 (9/10)
    assert average_recall(best_iou_per_gt(ious, scores, 1000)) == pytest.approx(0.95)
    np.testing.assert_allclose(recall_at_thresholds([0.96, 0.9]), [1] * 9 + [0.5])
    assert best_iou_per_gt(np.zeros((2, 0)), [], 100).tolist() == [0, 0]


def test_average_recall_from_masks():
    gt = [_box(20, 20, 0, 0, 10, 10), _box(20, 20, 10, 10, 20, 20)]
    props = [_box(20, 20, 0, 0, 10, 8), _box(20, 20, 10, 10, 20, 20), _box(20, 20, 0, 0, 20, 20)]
    ious = rle_iou([encode_rle(m) for m in gt], [encode_rle(m) for m in props])
    best = best_iou_per_gt(ious, [0.5, 0.9, 0.99], 100)
    np.testing.assert_allclose(best, [0.8, 1.0])  # 80/100, exact match
    assert average_recall(best) == pytest.approx((7 + 10) / 20)


def _toy_coco():
    h = w = 40
    a, b, c = _box(h, w, 0, 0, 10, 10), _box(h, w, 20, 20, 35, 35), _box(h, w, 5, 5, 15, 15)
    gt = {
        "images": [{"id": 1, "width": w, "height": h, "file_name": "1.png"}, {"id": 2, "width": w, "height": h, "file_name": "2.png"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(a), "area": 100, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": encode_rle(b), "area": 225, "bbox": [20, 20, 15, 15], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "segmentation": encode_rle(c), "area": 100, "bbox": [5, 5, 10, 10], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    det = lambda img, m, s: {"image_id": img, "category_id": 1, "segmentation": encode_rle(m), "score": s}  # noqa: E731
    return gt, (a, b, c), det


def test_coco_ap_perfect_and_partial():
    gt, (a, b, c), det = _toy_coco()
    perfect = coco_mask_ap(gt, [det(1, a, 0.9), det(1, b, 0.8), det(2, c, 0.7)])
    assert perfect["mask_ap"] == pytest.approx(1.0) and perfect["mask_ap50"] == pytest.approx(1.0)
    assert perfect["mask_ap75"] == pytest.approx(1.0) and perfect["mask_ap_small"] == pytest.approx(1.0)
    assert perfect["mask_ap_large"] is None  # no large objects: undefined, not 0
    # B missed: recall 2/3 at precision 1 -> 67 of COCO's 101 recall points
    partial = coco_mask_ap(gt, [det(1, a, 0.9), det(2, c, 0.7)])
    assert partial["mask_ap"] == pytest.approx(67 / 101)
    # plus a higher-scoring false positive: precision 2/3 at every recall point up to 2/3
    fp = _box(40, 40, 30, 0, 40, 10)
    with_fp = coco_mask_ap(gt, [det(2, fp, 0.95), det(1, a, 0.9), det(2, c, 0.7)])
    assert with_fp["mask_ap"] == pytest.approx(67 / 101 * 2 / 3)
    # evaluating one image only
    only1 = coco_mask_ap(gt, [det(1, a, 0.9), det(1, b, 0.8)], image_ids=[1])
    assert only1["mask_ap"] == pytest.approx(1.0)
    # no detections at all
    assert coco_mask_ap(gt, [])["mask_ap"] == 0.0


def test_coco_ap_crowd_region_ignored():
    gt, (a, b, c), det = _toy_coco()
    crowd = _box(40, 40, 30, 30, 40, 40)
    gt["annotations"].append({"id": 4, "image_id": 2, "category_id": 1, "segmentation": encode_rle(crowd),
                              "area": 100, "bbox": [30, 30, 10, 10], "iscrowd": 1})
    # a detection on the crowd region is neither a true nor a false positive
    res = coco_mask_ap(gt, [det(2, crowd, 0.99), det(1, a, 0.9), det(1, b, 0.8), det(2, c, 0.7)])
    assert res["mask_ap"] == pytest.approx(1.0)


def test_prompt_protocol_helpers():
    m = _box(9, 9, 0, 0, 9, 9)
    assert farthest_point(m) == (4, 4)  # image border counts as boundary
    ring = _box(20, 20, 2, 2, 18, 12)
    x, y = farthest_point(ring)
    assert ring[y, x] and 6 <= x <= 7 and 6 <= y <= 13
    assert batched_mask_to_box(torch.from_numpy(ring)[None]).tolist() == [[2, 2, 11, 17]]
