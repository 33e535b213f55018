"""Shared mask utilities (pocketsam.masks): hand-computed cases, no model needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketsam import masks as M


# --- existing COCO helpers keep their behaviour -----------------------------------------


def test_coco_rle_roundtrip_and_bbox():
    m = np.zeros((5, 7), bool)
    m[1:3, 2:6] = True
    rle = M.encode_rle(m)
    assert rle["size"] == [5, 7] and isinstance(rle["counts"], str)
    assert np.array_equal(M.decode_rle(rle), m)
    assert M.mask_bbox_xywh(m) == [2, 1, 4, 2]
    assert M.mask_bbox_xywh(np.zeros((3, 3), bool)) == [0, 0, 0, 0]


# --- boxes --------------------------------------------------------------------------------


def test_batched_mask_to_box_hand_cases():
    m = torch.zeros(3, 6, 8, dtype=torch.bool)
    m[0, 1:4, 2:5] = True  # rows 1..3, cols 2..4
    m[1, 5, 7] = True  # single pixel in the corner
    boxes = M.batched_mask_to_box(m)
    assert boxes.dtype == torch.int64
    assert boxes.tolist() == [[2, 1, 4, 3], [7, 5, 7, 5], [0, 0, 0, 0]]
    # extra leading dims and empty input
    assert M.batched_mask_to_box(m.view(1, 3, 6, 8)).shape == (1, 3, 4)
    assert M.batched_mask_to_box(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 4)
    assert M.box_xyxy_to_xywh(boxes[0]).tolist() == [2, 1, 2, 2]


def test_nms_hand_cases():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7])
    # IoU(0, 1) = 81 / 119 = 0.68
    assert M.nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert M.nms(boxes, scores, 0.7).tolist() == [0, 1, 2]
    # order follows scores, not input position
    assert M.nms(boxes, torch.tensor([0.1, 0.8, 0.9]), 0.5).tolist() == [2, 1]
    # IoU exactly 0.5 is not suppressed at threshold 0.5 (strict >)
    half = torch.tensor([[0, 0, 2, 1], [0, 0, 1, 1]], dtype=torch.float)
    assert M.nms(half, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert M.nms(half, torch.tensor([1.0, 0.5]), 0.49).tolist() == [0]
    # float32 IoU 1/3 = 0.33333334 > 1/3 (double): torchvision suppresses
    third = torch.tensor([[0, 0, 2, 1], [1, 0, 3, 1]], dtype=torch.float)
    assert M.nms(third, torch.tensor([1.0, 0.5]), 1 / 3).tolist() == [0]
    assert M.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_batched_nms_categories_and_ties():
    boxes = torch.tensor([[0, 0, 10, 10]] * 3, dtype=torch.float)
    scores = torch.tensor([0.5, 0.9, 0.7])
    assert M.batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5).tolist() == [1, 2]
    # ties: the same order torchvision's kernel gets from scores.sort(descending=True)
    tie_boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float)
    keep = M.batched_nms(tie_boxes, torch.ones(3), torch.zeros(3, dtype=torch.int64), 0.5)
    first = torch.ones(3).sort(descending=True)[1].tolist()
    assert keep.tolist() == [i for i in first if i != (1 if first.index(0) < first.index(1) else 0)]


def _greedy_reference(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    """Textbook greedy NMS, one pair at a time, float32 arithmetic like torchvision's kernel."""
    boxes = boxes.astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            xx1, yy1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            xx2, yy2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            zero = np.float32(0)
            inter = max(zero, xx2 - xx1) * max(zero, yy2 - yy1)
            a_i = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            a_j = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            if float(inter / (a_i + a_j - inter)) > thr:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


@pytest.mark.parametrize("n", [50, 1200])  # both torchvision code paths (<=1000, >1000 boxes)
def test_batched_nms_matches_bruteforce(n):
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32).round()
    scores = rng.permutation(n).astype(np.float32) / n  # distinct
    keep = M.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.zeros(n, dtype=torch.int64), 0.3)
    assert keep.tolist() == _greedy_reference(boxes, scores, 0.3)


# --- stability, upsampling ----------------------------------------------------------------


def test_stability_score_hand_case():
    logits = torch.tensor([[[2.0, 0.5], [-0.5, -2.0]], [[3.0, 3.0], [3.0, 3.0]]])
    s = M.stability_score(logits, 0.0, 1.0)
    assert s.tolist() == pytest.approx([1 / 3, 1.0])
    assert torch.isnan(M.stability_score(torch.full((1, 2, 2), -5.0), 0.0, 1.0)).all()


@pytest.mark.parametrize(
    "input_size,original_size",
    [((768, 1024), (768, 1024)), ((1024, 683), (300, 200)), ((576, 1024), (1080, 1920)), ((1024, 1024), (64, 64)),
     ((768, 1024), (480, 640)), ((1024, 683), (1500, 1000)), ((17, 1024), (5, 300)), ((1024, 1024), (1024, 1024))],
)
def test_upsample_logits_bit_identical_to_reference(input_size, original_size):
    from pocketsam.models.sam import Sam

    torch.manual_seed(0)
    low = torch.randn(2, 3, 256, 256) * 4
    fake = type("S", (), {"img_size": 1024})()
    ref = Sam.postprocess_masks(fake, low, input_size, original_size)
    out = M.upsample_logits(low, input_size, original_size, 1024)
    assert out.is_contiguous() and torch.equal(out, ref)
    # bfloat16 logits (the bf16 mode) are upsampled in float32
    assert torch.equal(M.upsample_logits(low.bfloat16(), input_size, original_size, 1024),
                       Sam.postprocess_masks(fake, low.bfloat16().float(), input_size, original_size))


# --- RLE ----------------------------------------------------------------------------------


def test_uncompressed_rle_roundtrip_and_coco():
    rng = np.random.default_rng(0)
    m = torch.from_numpy(rng.random((4, 9, 7)) > 0.6)
    m[1] = True  # starts with foreground: counts start with 0
    m[2] = False
    rles = M.mask_to_rle_uncompressed(m)
    assert rles[1]["counts"] == [0, 63]
    assert rles[2]["counts"] == [63]
    for r, mask in zip(rles, m.numpy()):
        assert r["size"] == [9, 7]
        assert np.array_equal(M.rle_to_mask(r), mask)
        assert M.area_from_rle(r) == mask.sum()
        coco = M.coco_encode_rle(r)
        assert isinstance(coco["counts"], str)
        assert np.array_equal(M.decode_rle(coco), mask)
        assert coco == M.encode_rle(mask)
    assert M.mask_to_rle_uncompressed(torch.zeros(0, 3, 3, dtype=torch.bool)) == []


# --- small regions ------------------------------------------------------------------------


def test_remove_small_regions_holes_and_islands():
    m = np.zeros((12, 12), bool)
    m[1:9, 1:9] = True
    m[4:6, 4:6] = False  # 4-px hole
    m[10:12, 10:11] = True  # 2-px island (8-connected to nothing)
    filled, changed = M.remove_small_regions(m, 5, "holes")
    assert changed and filled[4:6, 4:6].all() and filled[10, 10]
    cleaned, changed = M.remove_small_regions(filled, 5, "islands")
    assert changed and not cleaned[10:12, 10].any() and cleaned[1:9, 1:9].all()
    same, changed = M.remove_small_regions(cleaned, 5, "islands")
    assert not changed and same is cleaned
    # every island small: the largest is kept
    tiny = np.zeros((8, 8), bool)
    tiny[0, 0] = True
    tiny[5:7, 5:7] = True
    kept, changed = M.remove_small_regions(tiny, 10, "islands")
    assert changed and kept.sum() == 4 and kept[5:7, 5:7].all()
    # diagonal neighbours are connected (8-connectivity)
    diag = np.eye(4, dtype=bool)
    assert not M.remove_small_regions(diag, 4, "islands")[1]
    with pytest.raises(ValueError):
        M.remove_small_regions(m, 5, "blobs")


# --- grids, crops, uncrop -----------------------------------------------------------------


def test_point_grids():
    g = M.build_point_grid(2)
    assert g.tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    grids = M.build_all_layer_point_grids(8, 2, 2)
    assert [len(x) for x in grids] == [64, 16, 4]


def test_generate_crop_boxes_hand_case():
    boxes, layers = M.generate_crop_boxes((100, 200), 1, 512 / 1500)
    # overlap = int(512/1500 * 100) = 34; crop 117×67; x0 ∈ {0, 83}, y0 ∈ {0, 33}
    assert boxes == [[0, 0, 200, 100], [0, 0, 117, 67], [0, 33, 117, 100], [83, 0, 200, 67], [83, 33, 200, 100]]
    assert layers == [0, 1, 1, 1, 1]
    boxes2, layers2 = M.generate_crop_boxes((100, 200), 2, 512 / 1500)
    assert len(boxes2) == 1 + 4 + 16 and layers2.count(2) == 16


def test_uncrop_and_edge_filter():
    crop = [10, 20, 60, 80]
    assert M.uncrop_boxes_xyxy(torch.tensor([[1, 2, 3, 4]]), crop).tolist() == [[11, 22, 13, 24]]
    assert M.uncrop_points(torch.tensor([[1.5, 2.0]]), crop).tolist() == [[11.5, 22.0]]
    m = torch.ones(1, 60, 50, dtype=torch.bool)
    full = M.uncrop_masks(m, crop, 100, 100)
    assert full.shape == (1, 100, 100) and full.sum() == 3000 and full[0, 20, 10] and not full[0, 19, 10]
    # boxes in crop coordinates; crop [30, 30, 130, 150] of a 200×200 image
    boxes = torch.tensor([[30, 30, 60, 60], [5, 40, 50, 60], [40, 5, 99, 20]])
    near = M.is_box_near_crop_edge(boxes, [30, 30, 130, 150], [0, 0, 200, 200])
    assert near.tolist() == [False, True, True]
    # a crop edge that is also an image edge does not count
    assert M.is_box_near_crop_edge(torch.tensor([[0, 0, 5, 5]]), [0, 0, 50, 50], [0, 0, 100, 100]).tolist() == [False]


def test_mask_data_filter_and_cat():
    d = M.MaskData(a=torch.arange(4), b=np.arange(4) * 10, c=["w", "x", "y", "z"])
    d.filter(torch.tensor([True, False, True, True]))
    assert d["a"].tolist() == [0, 2, 3] and d["b"].tolist() == [0, 20, 30] and d["c"] == ["w", "y", "z"]
    d.filter(torch.tensor([2, 0]))
    assert d["c"] == ["z", "w"] and len(d) == 2
    d.cat(M.MaskData(a=torch.tensor([7]), b=np.array([70]), c=["q"]))
    assert d["a"].tolist() == [3, 0, 7] and d["c"] == ["z", "w", "q"]
    with pytest.raises(TypeError):
        M.MaskData(a=3)
