"""Machinery shared by the three "segment everything" generators.

* :class:`Stats` — the ``generator.last_stats`` dict: prompts per pass, candidates left
  after each filter, seconds per stage.
* :func:`decode_filter` — one batch of prompts → filtered candidates (RLEs, boxes,
  scores), the hot loop of every generator.
* :func:`remove_small_regions_and_dedupe` and :func:`to_records` — the shared tail.

How the hot loop stays exact *and* cheap
----------------------------------------
segment_anything upsamples *every* decoded mask (3 per prompt) to the full image,
then filters. We decode a batch to low-res logits (B×C×L×L, L = img_size/4) and apply
the predicted IoU filter first — it needs no pixels. Only the survivors are upsampled, a few at a
time (bounded memory), with ``SamPredictor.upsample``, which gives the
same values as ``Sam.postprocess_masks`` bit for bit while skipping the padding. The
stability score, the binary mask, its box and the crop-edge test are then computed on
those full-resolution logits exactly as the reference does, so the kept masks and their
scores are identical to the reference's. Computing the stability score on the low-res
logits instead would be ~16× cheaper per mask but changes which masks pass (a few
percent of borderline masks flip), so it is not done for the drop-in generators.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from pocketsam.masks import (
    MaskData,
    batch_iterator,
    area_from_rle,
    batched_mask_to_box,
    batched_nms,
    box_xyxy_to_xywh,
    coco_encode_rle,
    is_box_near_crop_edge,
    mask_to_rle_uncompressed,
    remove_small_regions,
    rle_to_mask,
    stability_score,
    uncrop_masks,
)

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
STAGES = ("proposals", "embedding", "decoding", "filtering", "postprocess")

#: Upper bound on the float32 full-resolution logits held at once (bytes).
FULL_RES_CHUNK_BYTES = 96 * 2**20


class Stats:
    """Collects what ``last_stats`` reports.

    ``prompts``: prompts decoded per pass (name → count). ``masks``: candidate count after
    each step (``decoded``, ``after_iou``, ``after_stability``, ``after_edge``,
    ``after_box_nms``, ``after_crop_nms``, ``after_small_regions``, ``returned``), summed
    over passes and crops. ``seconds``: wall time per stage (:data:`STAGES`) and total.
    """

    def __init__(self, generator: str) -> None:
        self.generator = generator
        self.prompts: dict[str, int] = {}
        self.masks: dict[str, int] = {}
        self.seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        self.extra: dict[str, Any] = {}
        self._t0 = time.perf_counter()

    def add_prompts(self, name: str, n: int) -> None:
        self.prompts[name] = self.prompts.get(name, 0) + int(n)

    def count(self, key: str, n: int) -> None:
        self.masks[key] = self.masks.get(key, 0) + int(n)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t

    def as_dict(self) -> dict[str, Any]:
        seconds = {k: round(v, 4) for k, v in self.seconds.items()}
        seconds["total"] = round(time.perf_counter() - self._t0, 4)
        return {
            "generator": self.generator,
            "prompts": dict(self.prompts),
            "prompts_total": int(sum(self.prompts.values())),
            "masks": dict(self.masks),
            "seconds": seconds,
            **self.extra,
        }


def check_output_mode(output_mode: str) -> None:
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"Unknown output_mode {output_mode!r}; expected one of {', '.join(OUTPUT_MODES)}")


def decode_and_filter(
    generator: Any,
    prompts: np.ndarray,
    kind: str,
    batch_size: int,
    crop_box: Sequence[int],
    orig_size: tuple[int, int],
    stats: Stats,
    covered: torch.Tensor | None = None,
    high_score_thresh: float | None = None,
) -> MaskData:
    """Decode ``prompts`` (``N×2`` points, 3 masks each, or ``N×4`` boxes, 1 mask each) in
    batches and keep what passes the generator's filters. The one loop every generator uses.
    Box prompts may carry more columns after the box (e.g. the proposal's row): they are
    not decoded, only kept in ``points`` with each surviving mask.

    ``generator`` supplies ``predictor``, ``pred_iou_thresh``, ``stability_score_thresh`` and
    ``stability_score_offset``.
    """
    is_points = kind == "points"
    data = MaskData()
    for (batch,) in batch_iterator(batch_size, prompts):
        with stats.stage("decoding"):
            if is_points:  # one foreground point per prompt, 3 masks each
                low_res, iou_preds = generator.predictor.predict_batch_low_res(
                    batch[:, None, :], np.ones((len(batch), 1), np.int32), multimask_output=True)
            else:
                low_res, iou_preds = generator.predictor.predict_batch_low_res(boxes=batch[:, :4], multimask_output=False)
        with stats.stage("filtering"):
            data.cat(
                filter_candidates(
                    low_res,
                    iou_preds,
                    batch,
                    predictor=generator.predictor,
                    crop_box=crop_box,
                    orig_size=orig_size,
                    pred_iou_thresh=generator.pred_iou_thresh,
                    stability_score_thresh=generator.stability_score_thresh,
                    stability_score_offset=generator.stability_score_offset,
                    stats=stats,
                    covered=covered,
                    high_score_thresh=high_score_thresh,
                )
            )
    return data


def _chunk_rows(n_pixels: int) -> int:
    return max(1, FULL_RES_CHUNK_BYTES // max(1, 4 * n_pixels))


def filter_candidates(
    low_res: torch.Tensor,
    iou_preds: torch.Tensor,
    prompts: np.ndarray,
    *,
    predictor: Any,
    crop_box: Sequence[int],
    orig_size: tuple[int, int],
    pred_iou_thresh: float,
    stability_score_thresh: float,
    stability_score_offset: float,
    stats: Stats,
    high_score_thresh: float | None = None,
    covered: torch.Tensor | None = None,
) -> MaskData:
    """Filter one decoded batch exactly as segment_anything's ``_process_batch``.

    Args:
        low_res: ``B×C×L×L`` logits (L = ``img_size / 4``); iou_preds: ``B×C``.
        prompts: ``B×K`` per-prompt array stored in column ``points`` (crop frame),
            repeated for each of the C masks.
        crop_box: ``[x0, y0, x1, y1]`` of the crop given to ``set_image``.
        orig_size: ``(H, W)`` of the whole image.
        high_score_thresh, covered: when given, ``covered`` (crop-sized bool ``h×w``) is
            OR-ed in place with ``logits > high_score_thresh`` of every kept mask
            (TinySAM's confident-region map).
    Returns:
        MaskData with ``rles`` (uncompressed, whole-image frame), ``boxes`` (int64 XYXY,
        crop frame), ``iou_preds``, ``stability_score``, ``points`` (float64, crop frame).
    """
    orig_h, orig_w = orig_size
    mask_threshold = predictor.model.mask_threshold
    c = low_res.shape[1]
    low = low_res.flatten(0, 1)
    ious = iou_preds.flatten(0, 1)
    pts = torch.as_tensor(np.repeat(prompts, c, axis=0))
    stats.count("decoded", len(ious))

    keep = ious > pred_iou_thresh if pred_iou_thresh > 0.0 else torch.ones_like(ious, dtype=torch.bool)
    idx = torch.nonzero(keep).flatten()
    stats.count("after_iou", len(idx))

    data = MaskData(
        rles=[],
        boxes=torch.zeros(0, 4, dtype=torch.int64),
        iou_preds=torch.zeros(0, dtype=ious.dtype),
        stability_score=torch.zeros(0, dtype=torch.float32),
        points=torch.zeros((0,) + tuple(pts.shape[1:]), dtype=pts.dtype),
    )
    if len(idx) == 0:
        return data
    crop_h, crop_w = predictor.original_size
    chunk = _chunk_rows(crop_h * crop_w)
    n_stable = 0
    for start in range(0, len(idx), chunk):
        sel = idx[start : start + chunk]
        logits = predictor.upsample(low[sel][:, None])[:, 0]
        stab = stability_score(logits, mask_threshold, stability_score_offset)
        ok = stab >= stability_score_thresh if stability_score_thresh > 0.0 else torch.ones_like(stab, dtype=torch.bool)
        if not bool(ok.all()):
            sel, stab, logits = sel[ok], stab[ok], logits[ok]
        n_stable += len(sel)
        if len(sel) == 0:
            continue
        masks = logits > mask_threshold
        boxes = batched_mask_to_box(masks)
        near = is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        if bool(near.any()):
            far = ~near
            sel, stab, logits, masks, boxes = sel[far], stab[far], logits[far], masks[far], boxes[far]
            if len(sel) == 0:
                continue
        if covered is not None and high_score_thresh is not None:
            covered |= (logits > high_score_thresh).any(dim=0)
        del logits
        rles = mask_to_rle_uncompressed(uncrop_masks(masks, crop_box, orig_h, orig_w))
        data.cat(MaskData(rles=rles, boxes=boxes, iou_preds=ious[sel], stability_score=stab, points=pts[sel]))
    stats.count("after_stability", n_stable)
    stats.count("after_edge", len(data))
    return data


def nms_filter(data: MaskData, scores: torch.Tensor, iou_threshold: float) -> None:
    """Box NMS over ``data['boxes']`` (one category), in place."""
    if len(data) == 0:
        return
    boxes = data["boxes"]
    boxes_t = torch.as_tensor(boxes).float()
    keep = batched_nms(boxes_t, scores, torch.zeros(len(boxes_t), dtype=torch.int64), iou_threshold)
    data.filter(keep)


def remove_small_regions_and_dedupe(data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
    """Fill small holes, drop small islands, then re-run box NMS preferring untouched
    masks (segment_anything's ``postprocess_small_regions``). In place; returns ``data``."""
    if len(data) == 0:
        return data
    new_masks = []
    scores = []
    for rle in data["rles"]:
        mask = rle_to_mask(rle)
        mask, changed_h = remove_small_regions(mask, min_area, mode="holes")
        mask, changed_i = remove_small_regions(mask, min_area, mode="islands")
        new_masks.append(torch.as_tensor(mask))
        scores.append(float(not (changed_h or changed_i)))
    masks = torch.stack(new_masks)
    boxes = batched_mask_to_box(masks)
    score_t = torch.as_tensor(scores)
    keep = batched_nms(boxes.float(), score_t, torch.zeros(len(boxes), dtype=torch.int64), nms_thresh)
    data_boxes = torch.as_tensor(data["boxes"]).clone()
    for i in keep.tolist():
        if scores[i] == 0.0:
            data["rles"][i] = mask_to_rle_uncompressed(masks[i][None])[0]
            data_boxes[i] = boxes[i]
    data["boxes"] = data_boxes
    data.filter(keep)
    return data


def to_records(data: MaskData, output_mode: str, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """MaskData (``rles``, ``boxes`` image-frame XYXY, ``iou_preds``, ``points``,
    ``stability_score``, ``crop_boxes``) → segment_anything's record dicts."""
    if output_mode == "coco_rle":
        segs = [coco_encode_rle(r) for r in data["rles"]]
    elif output_mode == "binary_mask":
        segs = [rle_to_mask(r) for r in data["rles"]]
    else:
        segs = data["rles"]
    boxes = box_xyxy_to_xywh(torch.as_tensor(data["boxes"])).tolist() if len(data) else []
    crop_boxes = box_xyxy_to_xywh(torch.as_tensor(data["crop_boxes"])).tolist() if len(data) else []
    ious = torch.as_tensor(data["iou_preds"]).tolist() if len(data) else []
    stabs = torch.as_tensor(data["stability_score"]).tolist() if len(data) else []
    points = torch.as_tensor(data["points"]).tolist() if len(data) else []
    records = []
    for i, seg in enumerate(segs):
        rec = {
            "segmentation": seg,
            "area": area_from_rle(data["rles"][i]),
            "bbox": boxes[i],
            "predicted_iou": ious[i],
            "point_coords": [points[i]],
            "stability_score": stabs[i],
            "crop_box": crop_boxes[i],
        }
        if extra:
            for key, column in extra.items():
                rec[key] = column[i]
        records.append(rec)
    return records
