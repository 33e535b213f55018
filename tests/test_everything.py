"""The three "segment everything" generators.

A tiny seeded model (decoder output scaled up so random logits have trained-like
magnitudes) keeps most tests fast; one test uses the golden vit_t checkpoint. The key
test compares the generators with a naive, line-by-line implementation of
segment_anything's algorithm (full-resolution masks for every candidate, filters in the
reference order) built on the shared primitives of ``pocketsam.masks``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pocketsam import masks as M
from pocketsam.errors import InputError, PocketSamError
from pocketsam.everything import (
    BoxesProposals,
    CocoDetectionsProposals,
    ObjectAwareMaskGenerator,
    SamAutomaticMaskGenerator,
    SamHierarchicalMaskGenerator,
    YoloProposals,
)

LOOSE = dict(pred_iou_thresh=-100.0, stability_score_thresh=0.2)


class _CachedEncoder(torch.nn.Module):
    """Wraps an image encoder, memoising embeddings per input (tests embed the same
    image many times)."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.inner = encoder
        self.img_size = encoder.img_size
        self.cache: dict[bytes, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = x.numpy().tobytes()
        if key not in self.cache:
            self.cache[key] = self.inner(x)
        return self.cache[key]


@pytest.fixture(scope="module")
def sam():
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_config

    from pocketsam.models import create_model

    torch.manual_seed(0)
    model = create_model(tiny_config()).eval()
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(60.0)
            mlp.layers[-1].bias.mul_(60.0)
        # segment_anything only applies the IoU filter for thresholds > 0: make the
        # random predicted IoUs positive so that filter can be exercised.
        model.mask_decoder.iou_prediction_head.layers[-1].bias.add_(2.0)
    model.image_encoder = _CachedEncoder(model.image_encoder)
    return model


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = (rng.random((72, 96, 3)) * 60 + 40).astype(np.uint8)
    img[10:40, 15:50] = [220, 30, 30]
    img[45:70, 55:90] = [30, 200, 60]
    yy, xx = np.mgrid[:72, :96]
    img[(yy - 20) ** 2 + (xx - 75) ** 2 < 120] = [20, 40, 230]
    return img


# ------------------------------------------------------------------------ naive reference


def naive_generate(model, image, points_per_side, pred_iou_thresh, stability_score_thresh, offset=1.0,
                   box_nms_thresh=0.7, crop_n_layers=0, crop_nms_thresh=0.7, overlap=512 / 1500,
                   min_mask_region_area=0):
    """segment_anything's algorithm, step by step, on full-resolution masks."""
    from pocketsam import SamPredictor

    pred = SamPredictor(model)
    grids = M.build_all_layer_point_grids(points_per_side, crop_n_layers, 1)
    h, w = image.shape[:2]
    crops, layers = M.generate_crop_boxes((h, w), crop_n_layers, overlap)
    cols = {k: [] for k in ("masks", "boxes", "iou", "stab", "pts", "crop")}
    for crop, layer in zip(crops, layers):
        x0, y0, x1, y1 = crop
        sub = np.ascontiguousarray(image[y0:y1, x0:x1])
        pred.set_image(sub)
        pts_all = grids[layer] * np.array(sub.shape[:2])[None, ::-1]
        c = {k: [] for k in cols}
        for (batch,) in M.batch_iterator(64, pts_all):
            tp = torch.as_tensor(pred.transform.apply_coords(batch, sub.shape[:2]))
            logits, iou, _ = pred.predict_torch(tp[:, None], torch.ones(len(tp), 1, dtype=torch.int),
                                                multimask_output=True, return_logits=True)
            logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
            p = torch.as_tensor(batch.repeat(3, axis=0))
            k = iou > pred_iou_thresh
            logits, iou, p = logits[k], iou[k], p[k]
            st = M.stability_score(logits, model.mask_threshold, offset)
            k = st >= stability_score_thresh
            logits, iou, p, st = logits[k], iou[k], p[k], st[k]
            m = logits > model.mask_threshold
            b = M.batched_mask_to_box(m)
            k = ~M.is_box_near_crop_edge(b, crop, [0, 0, w, h])
            c["masks"].append(M.uncrop_masks(m[k], crop, h, w))
            c["boxes"].append(b[k])
            c["iou"].append(iou[k])
            c["stab"].append(st[k])
            c["pts"].append(p[k])
        cat = {k: torch.cat(v) for k, v in c.items() if v}
        keep = M.batched_nms(cat["boxes"].float(), cat["iou"], torch.zeros(len(cat["iou"])), box_nms_thresh)
        cols["masks"].append(cat["masks"][keep])
        cols["boxes"].append(M.uncrop_boxes_xyxy(cat["boxes"][keep], crop))
        cols["iou"].append(cat["iou"][keep])
        cols["stab"].append(cat["stab"][keep])
        cols["pts"].append(M.uncrop_points(cat["pts"][keep], crop))
        cols["crop"].append(torch.tensor([crop] * len(keep), dtype=torch.int64).reshape(-1, 4))
    d = {k: torch.cat(v) for k, v in cols.items()}
    if len(crops) > 1:
        keep = M.batched_nms(d["boxes"].float(), 1 / M.box_area(d["crop"]), torch.zeros(len(d["iou"])), crop_nms_thresh)
        d = {k: v[keep] for k, v in d.items()}
    if min_mask_region_area > 0 and len(d["iou"]):
        new, scores = [], []
        for m in d["masks"].numpy():
            m2, ch1 = M.remove_small_regions(m, min_mask_region_area, "holes")
            m2, ch2 = M.remove_small_regions(m2, min_mask_region_area, "islands")
            new.append(torch.as_tensor(m2))
            scores.append(float(not (ch1 or ch2)))
        new = torch.stack(new)
        nb = M.batched_mask_to_box(new)
        keep = M.batched_nms(nb.float(), torch.tensor(scores), torch.zeros(len(new)), max(box_nms_thresh, crop_nms_thresh))
        for i in keep.tolist():
            if scores[i] == 0.0:
                d["masks"][i] = new[i]
                d["boxes"][i] = nb[i]
        d = {k: v[keep] for k, v in d.items()}
    return [
        {
            "segmentation": d["masks"][i].numpy(),
            "bbox": M.box_xyxy_to_xywh(d["boxes"][i]).tolist(),
            "predicted_iou": d["iou"][i].item(),
            "stability_score": d["stab"][i].item(),
            "point_coords": [d["pts"][i].tolist()],
            "crop_box": M.box_xyxy_to_xywh(d["crop"][i]).tolist(),
        }
        for i in range(len(d["iou"]))
    ]


def assert_same_records(mine, ref):
    assert len(mine) == len(ref)
    for a, b in zip(mine, ref):
        assert np.array_equal(a["segmentation"], b["segmentation"])
        assert a["area"] == int(b["segmentation"].sum())
        for key in ("bbox", "predicted_iou", "stability_score", "point_coords", "crop_box"):
            assert a[key] == b[key], key


# Random-weight masks are noisy and mostly span the whole image, so a 0.7 box NMS would
# leave one mask; NMS is switched off here to compare many masks (its semantics are
# tested in test_masks.py and with the golden model below).
@pytest.mark.parametrize(
    "kw",
    [dict(box_nms_thresh=1.0), dict(box_nms_thresh=1.0, crop_n_layers=1, crop_nms_thresh=1.0, min_mask_region_area=25),
     dict(box_nms_thresh=0.7, crop_n_layers=1, crop_nms_thresh=0.7)],
)
def test_grid_matches_reference_algorithm(sam, image, kw):
    gen = SamAutomaticMaskGenerator(sam, points_per_side=5, **LOOSE, **kw)
    mine = gen.generate(image)
    ref = naive_generate(sam, image, 5, **LOOSE, **kw)
    assert len(mine) >= (2 if kw["box_nms_thresh"] == 1.0 else 1), "test needs masks to compare"
    assert_same_records(mine, ref)


def test_grid_matches_reference_golden_vit_t(image, golden_vit_t):
    from pocketsam import build_sam

    model = build_sam(checkpoint=golden_vit_t.checkpoint)
    model.image_encoder = _CachedEncoder(model.image_encoder)
    kw = dict(pred_iou_thresh=-100.0, stability_score_thresh=0.5, box_nms_thresh=0.9)
    gen = SamAutomaticMaskGenerator(model, points_per_side=3, **kw)
    mine = gen.generate(image)
    assert len(mine) >= 1
    assert_same_records(mine, naive_generate(model, image, 3, **kw))


# ------------------------------------------------------------------------ records, filters


def test_records_and_output_modes(sam, image):
    out = {}
    for mode in ("binary_mask", "uncompressed_rle", "coco_rle"):
        gen = SamAutomaticMaskGenerator(sam, points_per_side=4, output_mode=mode, **LOOSE)
        out[mode] = gen.generate(image)
    binary = out["binary_mask"]
    assert binary
    keys = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
    for i, rec in enumerate(binary):
        assert set(rec) == keys
        seg = rec["segmentation"]
        assert seg.shape == image.shape[:2] and seg.dtype == bool
        assert rec["area"] == int(seg.sum())
        x, y, w, h = rec["bbox"]
        assert [x, y, w + 1, h + 1] == M.mask_bbox_xywh(seg)  # reference XYWH: w = x1 - x0
        assert rec["crop_box"] == [0, 0, image.shape[1], image.shape[0]]
        assert len(rec["point_coords"]) == 1 and len(rec["point_coords"][0]) == 2
        assert np.array_equal(M.rle_to_mask(out["uncompressed_rle"][i]["segmentation"]), seg)
        coco = out["coco_rle"][i]["segmentation"]
        assert isinstance(coco["counts"], str) and np.array_equal(M.decode_rle(coco), seg)
    with pytest.raises(ValueError):
        SamAutomaticMaskGenerator(sam, output_mode="png")
    with pytest.raises(ValueError):
        SamAutomaticMaskGenerator(sam, points_per_side=None)


def test_each_filter_is_applied(sam, image):
    base = SamAutomaticMaskGenerator(sam, points_per_side=4, pred_iou_thresh=-100.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    every = base.generate(image)
    s = base.last_stats["masks"]
    assert s["decoded"] == 48 and s["after_iou"] == 48 and s["after_stability"] == 48
    ious = sorted(r["predicted_iou"] for r in every)
    stabs = sorted(r["stability_score"] for r in every)
    iou_t, stab_t = ious[len(ious) // 2], stabs[len(stabs) // 2]
    assert iou_t > 0 and stab_t > 0

    g = SamAutomaticMaskGenerator(sam, points_per_side=4, pred_iou_thresh=iou_t, stability_score_thresh=0.0, box_nms_thresh=1.0)
    recs = g.generate(image)
    assert all(r["predicted_iou"] > iou_t for r in recs) and 0 < len(recs) < len(every)
    assert g.last_stats["masks"]["after_iou"] < 48

    g = SamAutomaticMaskGenerator(sam, points_per_side=4, pred_iou_thresh=-100.0, stability_score_thresh=stab_t, box_nms_thresh=1.0)
    recs = g.generate(image)
    assert all(r["stability_score"] >= stab_t for r in recs) and 0 < len(recs) < len(every)

    g = SamAutomaticMaskGenerator(sam, points_per_side=4, pred_iou_thresh=-100.0, stability_score_thresh=0.0, box_nms_thresh=0.3)
    recs = g.generate(image)
    assert len(recs) < len(every) == base.last_stats["masks"]["after_box_nms"]
    boxes = torch.tensor([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in recs], dtype=torch.float)
    if len(recs) > 1:
        a = M.box_area(boxes)
        lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
        rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        iou = inter / (a[:, None] + a[None] - inter)
        assert (iou.fill_diagonal_(0) <= 0.3 + 1e-6).all()

    g = SamAutomaticMaskGenerator(sam, points_per_side=4, min_mask_region_area=200, **LOOSE)
    recs = g.generate(image)
    from scipy import ndimage

    for r in recs:
        _, n = ndimage.label(r["segmentation"], structure=np.ones((3, 3)))
        sizes = np.bincount(ndimage.label(r["segmentation"], structure=np.ones((3, 3)))[0].ravel())[1:]
        assert n == 1 or sizes.min() >= 200


def test_uniform_image_and_stats(sam):
    flat = np.full((40, 56, 3), 128, np.uint8)
    gen = SamAutomaticMaskGenerator(sam, points_per_side=3)
    recs = gen.generate(flat)
    assert isinstance(recs, list)
    st = gen.last_stats
    assert st["prompts"] == {"grid": 9} and st["masks"]["decoded"] == 27
    assert set(st["seconds"]) >= {"embedding", "decoding", "filtering", "postprocess", "total"}
    assert st["masks"]["returned"] == len(recs)


# ------------------------------------------------------------------------ hierarchical


def test_hierarchical_two_passes(sam, image):
    g = SamHierarchicalMaskGenerator(sam, points_per_side=8, high_score_thresh=1.0, **LOOSE)
    recs = g.generate(image)
    st = g.last_stats
    assert st["prompts"]["sparse"] == 4
    assert 0 <= st["prompts"].get("dense", 0) <= 64
    assert 0.0 <= st["covered_fraction"] <= 1.0
    assert recs and set(recs[0]) >= {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
    # nothing confident → every dense point is prompted; everything confident → none.
    # TinySAM's layout (the default) on 72×96 at strides 9 and 12: 15 points around the
    # top-left sparse point, 11 around the top-right and the bottom-left ones (no +2 column
    # or row beyond the image), 8 around the bottom-right one; the regular grid: all 8².
    g_none = SamHierarchicalMaskGenerator(sam, points_per_side=8, high_score_thresh=float("inf"), **LOOSE)
    g_none.generate(image)
    assert g_none.last_stats["prompts"] == {"sparse": 4, "dense": 45}
    g_grid = SamHierarchicalMaskGenerator(sam, points_per_side=8, high_score_thresh=float("inf"),
                                          dense_layout="grid", **LOOSE)
    g_grid.generate(image)
    assert g_grid.last_stats["prompts"] == {"sparse": 4, "dense": 64}
    g_all = SamHierarchicalMaskGenerator(sam, points_per_side=8, high_score_thresh=-float("inf"), **LOOSE)
    g_all.generate(image)
    assert g_all.last_stats["prompts"].get("dense", 0) == 0
    # the dense pass adds candidates the sparse pass alone does not have
    assert g_none.last_stats["masks"]["decoded"] == 3 * 49


def test_hierarchical_covered_fraction_is_the_mean_over_crops(sam, image):
    g = SamHierarchicalMaskGenerator(sam, points_per_side=8, high_score_thresh=1.0, crop_n_layers=1, **LOOSE)
    seen = []
    passes = g._point_passes

    def spy(crop_size, layer, stats):
        for name, points in passes(crop_size, layer, stats):
            if name == "dense":
                seen.append(stats._averages["covered_fraction"][-1])
            yield name, points

    g._point_passes = spy
    g.generate(image)
    st = g.last_stats
    assert st["crops"] == len(seen) == 5
    assert st["covered_fraction"] == round(sum(seen) / 5, 4)
    assert "_n_cover" not in st and g._covered is None  # no side channel, nothing left behind


# ------------------------------------------------------------------------ shared machinery


def test_generators_take_a_predictor_and_one_filter_settings_object(sam, image):
    from pocketsam import SamPredictor
    from pocketsam.everything._common import FilterSettings

    predictor = SamPredictor(sam, mode="reference")
    for cls in (SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator):
        gen = cls(predictor, points_per_side=4, **LOOSE)
        assert gen.predictor is predictor  # its speed mode and inference copy
        assert gen.filters == FilterSettings(-100.0, 0.2, 1.0)
        assert [r["bbox"] for r in gen.generate(image)] == \
            [r["bbox"] for r in cls(sam, points_per_side=4, speed="reference", **LOOSE).generate(image)]
    boxes = ObjectAwareMaskGenerator(predictor, proposals=np.array([[2.0, 2.0, 20.0, 20.0]]))
    assert boxes.predictor is predictor and boxes.filters == FilterSettings(0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="speed='int8' given with a SamPredictor in mode 'reference'"):
        SamAutomaticMaskGenerator(predictor, speed="int8")
    # segment_anything's attributes read and replace the settings object
    gen = SamAutomaticMaskGenerator(sam, points_per_side=4)
    gen.pred_iou_thresh = 0.5
    assert gen.filters == FilterSettings(0.5, 0.95, 1.0) and gen.stability_score_thresh == 0.95


# ------------------------------------------------------------------------ object aware


def test_object_aware_boxes(sam, image):
    boxes = [[15, 10, 50, 40], [16, 10, 50, 40], [55, 45, 90, 70], [60, 5, 90, 35], [0, 0, 10, 10]]
    scores = [0.9, 0.8, 0.7, 0.6, 0.1]
    g = ObjectAwareMaskGenerator(sam, proposals=BoxesProposals(boxes, scores), stability_score_thresh=0.0)
    recs = g.generate(image)
    st = g.last_stats
    # box 1 duplicates box 0 (IoU 0.97 > 0.9), box 4 is below the score threshold
    assert st["proposals"] == {"raw": 5, "after_score_and_nms": 3}
    assert st["prompts"] == {"boxes": 3} and st["masks"]["decoded"] == 3  # one mask per box
    assert 1 <= len(recs) <= 3
    for r in recs:
        assert r["prompt_box"] in [boxes[0], boxes[2], boxes[3]]
        x0, y0, x1, y1 = r["prompt_box"]
        assert r["point_coords"] == [[(x0 + x1) / 2, (y0 + y1) / 2]]
        assert r["segmentation"].shape == image.shape[:2]
    # a plain callable works, and per-call proposals override
    g2 = ObjectAwareMaskGenerator(sam, stability_score_thresh=0.0, box_nms_thresh=1.0)
    recs2 = g2.generate(image, proposals=lambda im: (np.array([[55, 45, 90, 70]]), np.array([0.99])))
    assert len(recs2) == 1 and recs2[0]["prompt_box"] == [55, 45, 90, 70]


def test_object_aware_records_keep_each_detections_score_and_category(sam, image):
    boxes = [[15, 10, 50, 40], [16, 10, 50, 40], [55, 45, 90, 70], [60, 5, 90, 35], [0, 0, 10, 10]]
    scores = [0.7, 0.6, 0.9, 0.8, 0.1]  # decoded by decreasing score: rows 2, 3, 0
    cats = [5, 6, 7, None, 9]
    expected = {tuple(b): (sc, c) for b, sc, c in zip(boxes, scores, cats)}

    def check(recs, with_categories=True):
        assert len(recs) == 3
        for r in recs:
            sc, c = expected[tuple(r["prompt_box"])]
            assert r["score"] == sc
            if with_categories and c is not None:
                assert r["category_id"] == c
            else:
                assert "category_id" not in r  # a box without a category gets none

    kw = dict(stability_score_thresh=0.0, box_nms_thresh=1.0)
    # a callable may return the ids as a third value …
    check(ObjectAwareMaskGenerator(sam, proposals=lambda im: (np.array(boxes), np.array(scores), cats), **kw).generate(image))
    # … fixed proposals carry them as an attribute; their call still returns two values
    fixed = BoxesProposals(boxes, scores, cats)
    assert len(fixed(image)) == 2 and fixed.categories == cats
    check(ObjectAwareMaskGenerator(sam, proposals=fixed, **kw).generate(image))
    # a two-value source: scores kept, no categories
    check(ObjectAwareMaskGenerator(sam, proposals=BoxesProposals(boxes, scores), **kw).generate(image), False)
    # the columns stay aligned through small-region clean-up too
    check(ObjectAwareMaskGenerator(sam, proposals=fixed, min_mask_region_area=30, **kw).generate(image))
    with pytest.raises(InputError, match="category id 'cat'"):
        ObjectAwareMaskGenerator(sam, proposals=lambda im: (np.array(boxes), np.array(scores), ["cat"] * 5)).generate(image)
    with pytest.raises(InputError, match="5 boxes but 2 category ids"):
        BoxesProposals(boxes, scores, [1, 2])


def test_object_aware_no_proposals(sam, image):
    g = ObjectAwareMaskGenerator(sam, proposals=BoxesProposals(np.zeros((0, 4))))
    assert g.generate(image) == []
    assert g.last_stats["prompts"] == {"boxes": 0} and g.last_stats["seconds"]["embedding"] == 0.0
    assert g.generate(image, proposals=BoxesProposals([[1, 1, 5, 5]], [0.1])) == []


def test_coco_detections(tmp_path):
    p = tmp_path / "dets.json"
    p.write_text(
        '[{"image_id": 7, "bbox": [10, 20, 30, 40], "score": 0.9, "category_id": 1},'
        ' {"image_id": 7, "bbox": [0, 0, 5, 5], "score": 0.5, "category_id": 3},'
        ' {"image_id": 8, "bbox": [1, 1, 2, 2], "score": 0.7, "category_id": 1}]'
    )
    src = CocoDetectionsProposals(p, 7)
    boxes, scores = src(np.zeros((100, 100, 3), np.uint8))
    assert boxes.tolist() == [[10, 20, 40, 60], [0, 0, 5, 5]] and scores.tolist() == [0.9, 0.5]
    assert src.categories == [1, 3]
    assert CocoDetectionsProposals(p, "000000000008.jpg").boxes.tolist() == [[1, 1, 3, 3]]
    assert len(CocoDetectionsProposals(p, 9).boxes) == 0  # no detections: empty, not an error
    with pytest.raises(InputError, match="covers 2 images"):
        CocoDetectionsProposals(p)


@pytest.mark.parametrize(
    "text,match",
    [("{not json", "not valid JSON"), ('{"a": 1}', "results list"), ('[{"image_id": 1}]', "not a detection"),
     ('[{"image_id": 1, "bbox": [1, 2, "x", 4]}]', "bad bbox"), ('[{"image_id": 1, "bbox": [1, 2, -3, 4]}]', "bad bbox")],
)
def test_bad_detections_file(tmp_path, text, match):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(InputError, match=match) as info:
        CocoDetectionsProposals(p, 1)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="does not exist"):
        CocoDetectionsProposals(tmp_path / "missing.json", 1)


def test_yolo_needs_ultralytics(tmp_path):
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        with pytest.raises(PocketSamError, match="ultralytics"):
            YoloProposals(tmp_path / "w.pt")
    else:  # pragma: no cover
        with pytest.raises(InputError, match="do not exist"):
            YoloProposals(tmp_path / "w.pt")


def test_coco_detections_dataset_form_rules(tmp_path):
    """A COCO dataset used as proposals: ground truth has no scores (1.0), and its own
    category list is the known categories."""
    from pocketsam.proposals.sources import CocoDetections

    p = tmp_path / "gt.json"
    doc = {"images": [{"id": 4, "file_name": "x.jpg"}], "categories": [{"id": 1}, {"id": 2}],
           "annotations": [{"image_id": 4, "bbox": [1, 1, 4, 4], "category_id": 2}]}
    p.write_text(json.dumps(doc))
    dets = CocoDetections(p)
    assert dets.detections == [{"image_id": 4, "bbox": [1.0, 1.0, 4.0, 4.0], "score": 1.0, "category_id": 2}]
    assert dets.select("x.jpg")[0].tolist() == [[1, 1, 5, 5]]
    doc["annotations"][0]["category_id"] = 3
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"entry 0 has category_id 3, which is not a known category \(1, 2\)"):
        CocoDetections(p)
    with pytest.raises(InputError, match="entry 0 has no score"):  # a results list needs scores
        p.write_text(json.dumps([{"image_id": 4, "bbox": [1, 1, 4, 4]}]))
        CocoDetections(p)


def test_coco_instances_from_records_in_any_output_mode():
    from pocketsam.everything.coco import coco_instances, image_ids

    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:7] = True
    binary = {"segmentation": mask, "area": 15, "bbox": [2, 1, 5, 3], "predicted_iou": 0.7, "stability_score": 0.9}
    uncompressed = {**binary, "segmentation": M.mask_to_rle_uncompressed(torch.as_tensor(mask)[None])[0],
                    "score": 0.4, "category_id": 7}
    doc = coco_instances([({"id": 5, "file_name": "a.png", "height": 6, "width": 8}, [binary, uncompressed])],
                         {7: "cup"}, {"description": "test"})
    assert doc["categories"] == [{"id": 1, "name": "object"}, {"id": 7, "name": "cup"}]
    a, b = doc["annotations"]
    assert (a["id"], a["image_id"], a["category_id"], a["score"]) == (1, 5, 1, 0.7)
    assert (b["id"], b["category_id"], b["score"]) == (2, 7, 0.4)
    for ann in (a, b):
        assert isinstance(ann["segmentation"]["counts"], str) and (M.decode_rle(ann["segmentation"]) == mask).all()
    json.dumps(doc)  # serialisable as is
    assert image_ids(["000000397133.jpg", "12.png"]) == [397133, 12]
    assert image_ids(["a.jpg", "12.png"]) == [1, 2] and image_ids(["1.jpg", "1.png"]) == [1, 2]


def test_hierarchical_runs_code_written_for_tinysams_api(sam, image):
    # TinySAM's positional order: points_per_side, points_per_batch, pred_iou_thresh, high_score_thresh,
    # stability_score_thresh, ...
    g = SamHierarchicalMaskGenerator(sam, 8, 16, -100.0, 1.0, 0.2)
    assert (g.points_per_side, g.points_per_batch, g.pred_iou_thresh, g.high_score_thresh, g.stability_score_thresh) == \
        (8, 16, -100.0, 1.0, 0.2)
    recs = g.hierarchical_generate(image)
    assert g.last_stats["prompts"]["sparse"] == 4 and len(recs) > 0
    again = SamHierarchicalMaskGenerator(sam, points_per_side=8, high_score_thresh=1.0, **LOOSE).generate(image)
    assert [r["bbox"] for r in recs] == [r["bbox"] for r in again]
