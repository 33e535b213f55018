"""Segmentation metrics: mask IoU, mIoU, mask average recall (AR@K) and COCO mask AP.

* :func:`mask_iou` — pairwise IoU of dense masks, one matrix product.
* :func:`paired_iou` — IoU of matched pairs (prediction vs ground truth, or vs a teacher).
* :func:`rle_iou` — pairwise IoU on COCO RLEs (pycocotools; fast for large images and many
  proposals).
* :func:`best_iou_per_gt` + :func:`average_recall` — mask AR@K as MobileSAMv2 reports it
  for "segment everything": keep the top-K proposals by predicted IoU, give each ground
  truth mask its best IoU among them, and average the recall over the IoU thresholds
  0.50:0.05:0.95.
* :func:`coco_mask_ap` — pycocotools ``COCOeval`` with ``iouType="segm"``, quietly.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Iterable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

#: The COCO IoU thresholds 0.50, 0.55, ..., 0.95.
IOU_THRESHOLDS: np.ndarray = np.round(np.linspace(0.5, 0.95, 10), 2)


def mask_iou(a: np.ndarray, b: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Pairwise IoU of two stacks of binary masks.

    Args:
        a: N×H×W bool (or 0/1) masks; b: M×H×W.
        chunk: rows of ``a`` per matrix product (bounds memory).
    Returns:
        N×M float64; the IoU of two empty masks is 0.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"mask_iou needs N×H×W and M×H×W stacks of one size, got {a.shape} and {b.shape}")
    n, m = len(a), len(b)
    out = np.zeros((n, m), np.float64)
    if n == 0 or m == 0:
        return out
    # float32 sums are exact below 2**24 pixels; use float64 beyond
    dtype = np.float32 if a.shape[1] * a.shape[2] < 2**24 else np.float64
    bf = b.reshape(m, -1).astype(dtype)
    area_b = bf.sum(1, dtype=np.float64)
    for s in range(0, n, chunk):
        af = a[s : s + chunk].reshape(-1, bf.shape[1]).astype(dtype)
        inter = (af @ bf.T).astype(np.float64)
        union = af.sum(1, dtype=np.float64)[:, None] + area_b[None, :] - inter
        out[s : s + chunk] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def paired_iou(a: np.ndarray, b: np.ndarray, both_empty: float = 0.0) -> np.ndarray:
    """IoU of each mask in ``a`` with the mask at the same index in ``b`` (N×H×W each);
    ``both_empty`` where neither has a pixel (1.0 when comparing two models: they agree)."""
    a = np.asarray(a, bool).reshape(len(a), -1)
    b = np.asarray(b, bool).reshape(len(b), -1)
    inter = (a & b).sum(1)
    union = (a | b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), both_empty)


def rle_iou(gt: Sequence[dict[str, Any]], pred: Sequence[dict[str, Any]]) -> np.ndarray:
    """Pairwise IoU, len(gt)×len(pred), of COCO RLEs (``counts`` bytes or str)."""
    if len(gt) == 0 or len(pred) == 0:
        return np.zeros((len(gt), len(pred)), np.float64)
    g = [_bytes_rle(r) for r in gt]
    p = [_bytes_rle(r) for r in pred]
    return np.asarray(mask_utils.iou(g, p, [0] * len(p)), np.float64).reshape(len(g), len(p))


def _bytes_rle(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, str):
        return {"size": list(rle["size"]), "counts": counts.encode("ascii")}
    if isinstance(counts, list):
        h, w = rle["size"]
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return rle


def miou(ious: Iterable[float]) -> float:
    """Mean of per-mask IoUs (``nan`` for none)."""
    v = np.asarray(list(ious), np.float64)
    return float(v.mean()) if v.size else float("nan")


def best_iou_per_gt(iou_matrix: np.ndarray, scores: Sequence[float], k: int) -> np.ndarray:
    """For each ground truth, its best IoU among the top-``k`` proposals by score.

    Args:
        iou_matrix: G×P IoUs (ground truth × proposals).
        scores: P proposal scores (predicted IoU); ties keep proposal order.
        k: how many top proposals count.
    Returns:
        G IoUs (0 where there is no proposal).
    """
    iou_matrix = np.asarray(iou_matrix, np.float64)
    g, p = iou_matrix.shape
    if g == 0:
        return np.zeros(0)
    if p == 0 or k <= 0:
        return np.zeros(g)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")[:k]
    return iou_matrix[:, order].max(1)


def recall_at_thresholds(best_ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """Fraction of ground truths whose best IoU reaches each threshold."""
    best_ious = np.asarray(best_ious, np.float64)
    if best_ious.size == 0:
        return np.full(len(thresholds), np.nan)
    return (best_ious[None, :] >= np.asarray(thresholds)[:, None] - 1e-12).mean(1)


def average_recall(best_ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> float:
    """Mask AR: recall averaged over IoU thresholds (0.50:0.05:0.95 by default), pooled
    over all ground-truth masks given (``nan`` for none)."""
    return float(np.mean(recall_at_thresholds(best_ious, thresholds)))


COCO_STAT_NAMES = (
    "mask_ap", "mask_ap50", "mask_ap75", "mask_ap_small", "mask_ap_medium", "mask_ap_large",
    "mask_ar1", "mask_ar10", "mask_ar100", "mask_ar_small", "mask_ar_medium", "mask_ar_large",
)


def coco_mask_ap(
    ground_truth: dict[str, Any],
    detections: Sequence[dict[str, Any]],
    image_ids: Sequence[int] | None = None,
) -> dict[str, float | None]:
    """COCO mask AP/AR with pycocotools (``iouType="segm"``), printing nothing.

    Args:
        ground_truth: a COCO instances dict (crowd regions included: COCOeval ignores
            detections matched to them). Missing ``iscrowd``/``area``/``categories`` are
            filled in.
        detections: COCO results — ``{"image_id", "category_id", "segmentation" (RLE),
            "score"}``.
        image_ids: evaluate only these images (default: all in ``ground_truth``).
    Returns:
        :data:`COCO_STAT_NAMES` → value in 0..1, or ``None`` where COCOeval has nothing to
        measure (e.g. no small objects: COCOeval's -1).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_data = copy.deepcopy(ground_truth)
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt_data["images"]}
    for ann in gt_data["annotations"]:
        ann.setdefault("iscrowd", 0)
        ann.setdefault("category_id", 1)
        if "area" not in ann:
            h, w = sizes[ann["image_id"]]
            seg = ann["segmentation"]
            if isinstance(seg, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            else:
                rle = _bytes_rle(seg)
            ann["area"] = float(mask_utils.area(rle))
    cats = {c["id"] for c in gt_data.get("categories", [])}
    used = {a["category_id"] for a in gt_data["annotations"]} | {d.get("category_id", 1) for d in detections}
    gt_data["categories"] = list(gt_data.get("categories", [])) + [{"id": c, "name": str(c)} for c in sorted(used - cats)]
    dets = []
    for d in detections:
        d = dict(d)
        d.setdefault("category_id", 1)
        d["segmentation"] = _str_rle(d["segmentation"])
        dets.append(d)

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_data
        gt.createIndex()
        if not dets:
            return _empty_stats(gt, image_ids)
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iouType="segm")
        if image_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: (None if v < 0 else float(v)) for name, v in zip(COCO_STAT_NAMES, ev.stats)}


def _empty_stats(gt: Any, image_ids: Sequence[int] | None) -> dict[str, float | None]:
    """Stats when there are no detections: 0 wherever ground truth exists, else None."""
    areas = [a["area"] for a in gt.dataset["annotations"] if not a.get("iscrowd") and (image_ids is None or a["image_id"] in set(image_ids))]
    if not areas:
        return {name: None for name in COCO_STAT_NAMES}
    out: dict[str, float | None] = {name: 0.0 for name in COCO_STAT_NAMES}
    for suffix, lo, hi in (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, 1e10)):
        if not any(lo <= a < hi for a in areas):
            out[f"mask_ap_{suffix}"] = out[f"mask_ar_{suffix}"] = None
    return out


def _str_rle(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        return {"size": list(rle["size"]), "counts": counts.decode("ascii")}
    return rle
