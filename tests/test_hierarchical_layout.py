"""The hierarchical generator's default pass-2 layout is TinySAM's.

``tinysam_reference`` below is TinySAM's ``SamHierarchicalMaskGenerator.hierarchical_generate``
re-written step by step, independently of pocketsam's generator: full-resolution logits for
every candidate, the filters in TinySAM's order, its coverage map, its point loops
(offsets around each sparse point, the ``+2`` column and row only inside the image), its
normalise-then-rescale of the points, dense candidates before sparse ones, one box NMS.
It runs on the bundled (trained) model, whose confident logits make the coverage test do
real work, over the example scene and synthetic scenes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pocketsam import masks as M
from pocketsam.everything import SamHierarchicalMaskGenerator

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def trained():
    from pocketsam import build_sam

    return build_sam()  # the bundled model


def _scenes() -> list[tuple[str, np.ndarray, int]]:
    """(name, image, points_per_side): the example scene at a stride that does not divide
    its sides (512 // 14 = 36, 384 // 14 = 27: sparse points off the pixel grid), and two
    synthetic scenes, one per style (seeds the bundled model was not trained on)."""
    from PIL import Image

    from pocketsam.data.synth import image_rng, render_scene

    out = [("examples/scene.jpg", np.array(Image.open(EXAMPLES / "scene.jpg").convert("RGB")), 14)]
    for style, index in (("default", 3), ("alt", 5)):
        out.append((f"synth {style} #{index}", render_scene(image_rng(11, index, style), 256, 256, style).image, 16))
    return out


SCENES = _scenes()


def tinysam_reference(model, image, points_per_side, pred_iou_thresh, high_score_thresh, stability_score_thresh,
                      box_nms_thresh=0.7, points_per_batch=64):
    """TinySAM's hierarchical algorithm (no crops, no small-region step).

    Returns:
        (records as dicts with ``segmentation``, ``predicted_iou``, ``point_coords``, in
        output order; the pass-2 prompts in pixels, in decoding order).
    """
    from pocketsam import SamPredictor

    pred = SamPredictor(model)
    pred.set_image(image)
    ih, iw = image.shape[:2]

    def one_pass(grid, need_high):
        pts_all = grid * np.array(image.shape[:2])[None, ::-1]
        cols = {k: [] for k in ("masks", "boxes", "iou", "pts")}
        high = torch.zeros(ih, iw, dtype=torch.bool)
        for (batch,) in M.batch_iterator(points_per_batch, pts_all):
            tp = torch.as_tensor(pred.transform.apply_coords(batch, (ih, iw)))
            logits, iou, _ = pred.predict_torch(tp[:, None], torch.ones(len(tp), 1, dtype=torch.int),
                                                multimask_output=True, return_logits=True)
            logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
            p = torch.as_tensor(batch.repeat(3, axis=0))
            if pred_iou_thresh > 0:
                k = iou > pred_iou_thresh
                logits, iou, p = logits[k], iou[k], p[k]
            st = M.stability_score(logits, model.mask_threshold, 1.0)
            if stability_score_thresh > 0:
                k = st >= stability_score_thresh
                logits, iou, p = logits[k], iou[k], p[k]
            m = logits > model.mask_threshold
            b = M.batched_mask_to_box(m)
            k = ~M.is_box_near_crop_edge(b, [0, 0, iw, ih], [0, 0, iw, ih])  # whole image: keeps all
            if need_high:
                for one in logits[k]:
                    high |= one > high_score_thresh
            cols["masks"].append(m[k])
            cols["boxes"].append(b[k])
            cols["iou"].append(iou[k])
            cols["pts"].append(p[k])
        return {k: torch.cat(v) for k, v in cols.items()}, high

    sparse = M.build_point_grid(points_per_side // 4)
    first, covered = one_pass(sparse, True)
    hs, ws = ih // points_per_side, iw // points_per_side

    def free(x, y):
        return not bool(covered[int(y), int(x)])

    new = []
    for gx, gy in sparse:
        x, y = gx * iw, gy * ih
        for i in (-1, 0, 1):
            for j in (-1, 0, 1):
                if (i, j) != (0, 0) and free(x + ws * i, y + hs * j):
                    new.append([(x + ws * i) / iw, (y + hs * j) / ih])
        if x + 2 * ws < iw:
            new += [[(x + 2 * ws) / iw, (y + hs * j) / ih] for j in (-1, 0, 1) if free(x + 2 * ws, y + hs * j)]
        if y + 2 * hs < ih:
            new += [[(x + ws * i) / iw, (y + 2 * hs) / ih] for i in (-1, 0, 1) if free(x + ws * i, y + 2 * hs)]
        if x + 2 * ws < iw and y + 2 * hs < ih and free(x + 2 * ws, y + 2 * hs):
            new.append([(x + 2 * ws) / iw, (y + 2 * hs) / ih])
    second, _ = one_pass(np.array(new), False)
    d = {k: torch.cat([second[k], first[k]]) for k in first}  # dense candidates first
    keep = M.batched_nms(d["boxes"].float(), d["iou"], torch.zeros(len(d["iou"])), box_nms_thresh)
    records = [{"segmentation": d["masks"][i].numpy(), "predicted_iou": d["iou"][i].item(),
                "point_coords": [d["pts"][i].tolist()]} for i in keep.tolist()]
    return records, np.array(new) * np.array(image.shape[:2])[None, ::-1]


def run_with_dense_prompts(gen, image) -> tuple[list[dict], np.ndarray]:
    """Run ``gen`` on ``image``: its records and the pass-2 prompts it decoded (pixels, in order)."""
    seen = []
    passes = gen._point_passes

    def spy(crop_size, layer, stats):
        for name, points in passes(crop_size, layer, stats):
            if name == "dense":
                seen.append(points)
            yield name, points

    gen._point_passes = spy
    records = gen.generate(image)
    return records, seen[0]


def match(mine, ref, thresh=0.95) -> tuple[int, int]:
    """(reference masks matched by one of ``mine`` at IoU >= thresh, masks of ``mine`` matching none)."""
    from pocketsam.eval.metrics import mask_iou

    a = np.stack([r["segmentation"] for r in ref])
    b = np.stack([r["segmentation"] for r in mine])
    iou = mask_iou(a, b)
    return int((iou.max(1) >= thresh).sum()), int((iou.max(0) < thresh).sum())


@pytest.mark.parametrize("name,image,pps", SCENES, ids=[s[0] for s in SCENES])
def test_default_layout_matches_tinysams_reference_on_a_trained_model(trained, name, image, pps):
    th = dict(trained.everything_defaults)  # the thresholds this model's heads are calibrated for
    assert set(th) == {"pred_iou_thresh", "stability_score_thresh", "high_score_thresh"}
    ref, ref_dense = tinysam_reference(trained, image, pps, **th)
    gen = SamHierarchicalMaskGenerator(trained, points_per_side=pps, **th)
    assert gen.dense_layout == "tinysam"
    mine, dense = run_with_dense_prompts(gen, image)
    # the coverage test did real work: it skipped some of the layout's points
    from pocketsam.everything.hierarchical import tinysam_dense_points

    sparse = M.build_point_grid(pps // 4) * np.array(image.shape[:2])[None, ::-1]
    assert 0 < len(dense) < len(tinysam_dense_points(sparse, image.shape[:2], pps)) and len(ref) >= 5
    # the same prompts, to the bit and in the same order
    assert dense.shape == ref_dense.shape and np.array_equal(dense, ref_dense)
    matched, extra = match(mine, ref)
    assert matched >= 0.98 * len(ref) and extra <= 0.02 * len(ref), (name, matched, extra, len(ref))
    # ... and in fact the same masks, scores and points, in the same order
    assert [r["predicted_iou"] for r in mine] == pytest.approx([r["predicted_iou"] for r in ref], abs=1e-6)
    assert [r["point_coords"] for r in mine] == [r["point_coords"] for r in ref]


def test_grid_layout_is_the_regular_dense_grid(trained):
    from pocketsam.everything.hierarchical import tinysam_dense_points

    image, pps = SCENES[1][1], 8
    gen = SamHierarchicalMaskGenerator(trained, points_per_side=pps, dense_layout="grid", **trained.everything_defaults)
    dense = run_with_dense_prompts(gen, image)[1]
    size = np.array(image.shape[:2])[None, ::-1]
    grid = {tuple(p) for p in (M.build_point_grid(pps) * size).tolist()}
    tinysam = {tuple(p) for p in tinysam_dense_points(M.build_point_grid(pps // 4) * size, image.shape[:2], pps).tolist()}
    assert len(dense) > 0 and {tuple(p) for p in dense.tolist()} <= grid
    assert len(grid - tinysam) > 0.5 * len(grid)  # cell centres vs integer-stride offsets: mostly other points


def test_tinysam_layout_geometry():
    from pocketsam.everything.hierarchical import tinysam_dense_points

    h, w = 64, 96
    sparse = M.build_point_grid(2) * np.array([w, h], dtype=np.float64)  # (24, 16) (72, 16) (24, 48) (72, 48)
    pts = tinysam_dense_points(sparse, (h, w), 8)  # strides 12 (x), 8 (y)
    # top-left sparse point: 15 neighbours at x 12..48, y 8..32 (the +2 column and row fit)
    assert pts[:15].tolist() == [[24 + 12 * i, 16 + 8 * j] for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)] \
        + [[48, 16 + 8 * j] for j in (-1, 0, 1)] + [[24 + 12 * i, 32] for i in (-1, 0, 1)] + [[48, 32]]
    # the right-hand sparse points lose their +2 column (72 + 24 = 96 is outside), the
    # bottom ones their +2 row (48 + 16 = 64): 15 + 11 + 11 + 8
    assert len(pts) == 45
    assert (pts >= 0).all() and (pts[:, 0] < w).all() and (pts[:, 1] < h).all()
    assert not (pts[:, None] == sparse[None]).all(-1).any()
    # a side shorter than points_per_side (stride 0 across): each distinct point once
    thin = tinysam_dense_points(np.array([[2.0, 32.0]]), (64, 4), 8)
    assert len(np.unique(thin, axis=0)) == len(thin) and not (thin == [2.0, 32.0]).all(1).any()


def test_unknown_layout_is_a_clear_error(trained):
    with pytest.raises(ValueError, match="unknown dense_layout 'tinySAM'; use one of 'tinysam', 'grid'"):
        SamHierarchicalMaskGenerator(trained, dense_layout="tinySAM")
