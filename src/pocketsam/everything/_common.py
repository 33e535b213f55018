"""Machinery shared by the three "segment everything" generators.

* :class:`MaskGeneratorBase` — what every generator holds: a
  :class:`~pocketsam.predictor.SamPredictor` (so a speed mode), one
  :class:`FilterSettings`, the NMS / small-region / output settings, the hook
  :meth:`~MaskGeneratorBase._on_kept` that sees every kept mask's logits, the
  :attr:`~MaskGeneratorBase.progress` callback (prompts decoded / total, inside one
  image) and :meth:`~MaskGeneratorBase._finished`, which ends every ``generate`` call
  (``last_stats``; one :class:`UnusedRecommendationWarning` when no mask came out while
  the checkpoint's own thresholds were not used).
* :class:`Stats` — the ``generator.last_stats`` dict: prompts per pass, candidates left
  after each filter, seconds per stage, averages (e.g. ``covered_fraction``).
* :func:`decode_and_filter` — prompts in the embedded image's pixels → filtered
  candidates (RLEs, boxes, scores), the hot loop of every generator.
* :func:`remove_small_regions_and_dedupe`, :func:`empty_data` and :func:`to_records` —
  the shared tail.

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
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from pocketsam.errors import InputError
from pocketsam.everything.modes import RECOMMENDABLE
from pocketsam.masks import (
    MaskData,
    area_from_rle,
    batch_iterator,
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
from pocketsam.predictor import SamPredictor

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
STAGES = ("proposals", "embedding", "decoding", "filtering", "postprocess")

#: Upper bound on the float32 full-resolution logits held at once (bytes).
FULL_RES_CHUNK_BYTES = 96 * 2**20


class Stats:
    """Collects what ``last_stats`` reports.

    ``prompts``: prompts decoded per pass (name → count). ``masks``: candidate count after
    each step (``decoded``, ``after_iou``, ``after_stability``, ``after_edge``,
    ``after_box_nms``, ``after_crop_nms``, ``after_small_regions``, ``returned``), summed
    over passes and crops. ``seconds``: wall time per stage (:data:`STAGES`) and total;
    ``cpu_seconds``: the same split in process CPU time (``time.process_time``, all
    threads), which a loaded machine does not inflate.
    """

    def __init__(self, generator: str) -> None:
        self.generator = generator
        self.prompts: dict[str, int] = {}
        self.masks: dict[str, int] = {}
        self.seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        self.cpu_seconds: dict[str, float] = {s: 0.0 for s in STAGES}
        self.extra: dict[str, Any] = {}
        self._averages: dict[str, list[float]] = {}
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        self.decoded = 0  # prompts decoded so far, for the progress callback

    def add_prompts(self, name: str, n: int) -> None:
        self.prompts[name] = self.prompts.get(name, 0) + int(n)

    def count(self, key: str, n: int) -> None:
        self.masks[key] = self.masks.get(key, 0) + int(n)

    def average(self, key: str, value: float) -> None:
        """One more value of ``key``; :meth:`as_dict` reports their mean (e.g. per crop)."""
        self._averages.setdefault(key, []).append(float(value))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t
            self.cpu_seconds[name] += time.process_time() - c

    def as_dict(self) -> dict[str, Any]:
        seconds = {k: round(v, 4) for k, v in self.seconds.items()}
        seconds["total"] = round(time.perf_counter() - self._t0, 4)
        cpu_seconds = {k: round(v, 4) for k, v in self.cpu_seconds.items()}
        cpu_seconds["total"] = round(time.process_time() - self._c0, 4)
        return {
            "generator": self.generator,
            "prompts": dict(self.prompts),
            "prompts_total": int(sum(self.prompts.values())),
            "masks": dict(self.masks),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            **{k: round(sum(v) / len(v), 4) for k, v in self._averages.items()},
            **self.extra,
        }


@dataclass(frozen=True)
class FilterSettings:
    """Which decoded masks a generator keeps (segment_anything's ``_process_batch``).

    Attributes:
        pred_iou_thresh: keep masks whose predicted IoU is ``>`` this (0 disables).
        stability_score_thresh: keep masks whose stability score is ``>=`` this (0 disables).
        stability_score_offset: logit offset of the stability score's two thresholds.
    """

    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float = 1.0


@dataclass(frozen=True)
class Crop:
    """Where the embedded image (the crop given to ``set_image``) lies in the whole image.

    Attributes:
        box: ``[x0, y0, x1, y1]`` of the crop in whole-image pixels.
        image_size: ``(H, W)`` of the whole image.
    """

    box: Sequence[int]
    image_size: tuple[int, int]


#: Sees the full-resolution logits (``K×h×w`` float32, crop frame) of the masks kept from
#: one chunk of decoded candidates.
KeptHook = Callable[[torch.Tensor], None]

#: Told after every decoded batch how far one ``generate`` call is: ``(prompts decoded,
#: prompts so far)``. The second number grows when a later pass or crop adds its prompts
#: (hierarchical's dense pass, crop layers); it is final once the two are equal at the end.
ProgressHook = Callable[[int, int], None]


class UnusedRecommendationWarning(UserWarning):
    """A generator returned no masks while the model's checkpoint records "everything"
    thresholds of its own (``sam.everything_defaults``) that the generator did not use."""


def as_predictor(model: Any, speed: str | None) -> Any:
    """``model`` itself when it is a :class:`~pocketsam.predictor.SamPredictor` (its speed
    mode and inference copy are used), else ``SamPredictor(model, mode=speed)``.

    Raises:
        ValueError: a predictor together with a different ``speed``.
    """

    if isinstance(model, SamPredictor):
        if speed is not None and speed != model.mode:
            raise InputError(f"speed={speed!r} given with a SamPredictor in mode {model.mode!r}")
        return model
    return SamPredictor(model, mode=speed)


def _filter_setting(name: str) -> property:
    """A generator attribute (``gen.pred_iou_thresh``, as segment_anything's) that reads and
    replaces one field of its :class:`FilterSettings`."""

    def get(self: Any) -> float:
        return getattr(self.filters, name)

    def set_(self: Any, value: float) -> None:
        self.filters = replace(self.filters, **{name: value})

    return property(get, set_, doc=f"``filters.{name}``")


class MaskGeneratorBase:
    """What the three generators share.

    Args:
        model: a :class:`~pocketsam.models.sam.Sam`, or a
            :class:`~pocketsam.predictor.SamPredictor` to run (its speed mode).
        filters: which decoded masks are kept.
        box_nms_thresh: box-IoU threshold of the NMS among the kept masks.
        min_mask_region_area: fill holes / drop islands smaller than this (px); 0 = off.
        output_mode: ``"binary_mask"`` | ``"uncompressed_rle"`` | ``"coco_rle"``.
        speed: the predictor's speed mode when ``model`` is a model (``None``: the
            model's own preference).
    """

    name = ""

    pred_iou_thresh = _filter_setting("pred_iou_thresh")
    stability_score_thresh = _filter_setting("stability_score_thresh")
    stability_score_offset = _filter_setting("stability_score_offset")

    def __init__(self, model: Any, filters: FilterSettings, box_nms_thresh: float, min_mask_region_area: int,
                 output_mode: str, speed: str | None) -> None:
        check_output_mode(output_mode)
        self.predictor = as_predictor(model, speed)
        self.filters = filters
        self.box_nms_thresh = box_nms_thresh
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.last_stats: dict[str, Any] = {}
        #: :data:`ProgressHook` called after every decoded batch of a ``generate`` call (None: off).
        self.progress: ProgressHook | None = None
        self._said_unused = False

    def _on_kept(self, logits: torch.Tensor) -> None:
        """Hook (:data:`KeptHook`): the logits of masks that passed the filters; nothing here."""

    def _decode(self, prompts: np.ndarray, boxes: bool, batch_size: int, crop: Crop, stats: Stats) -> MaskData:
        """:func:`decode_and_filter` with this generator's predictor, filters and hooks; the
        prompts must already be counted (``stats.add_prompts``) for :attr:`progress`."""
        progress = self.progress

        def decoded(n: int) -> None:
            stats.decoded += n
            if progress is not None:
                progress(stats.decoded, sum(stats.prompts.values()))

        return decode_and_filter(self.predictor, prompts, boxes, batch_size, self.filters, crop, stats,
                                 self._on_kept, decoded)

    def _finished(self, stats: Stats) -> None:
        """The end of every ``generate`` call: ``last_stats``, and — once per generator — a
        :class:`UnusedRecommendationWarning` when candidates were decoded but none came out
        while the checkpoint recommends thresholds (:attr:`Sam.everything_defaults`) that this
        mode takes and that differ from those used: SAM's defaults (0.88 / 0.95) can reject
        every mask of a smaller model, and a silent empty result hides why."""
        self.last_stats = stats.as_dict()
        masks = self.last_stats["masks"]
        if self._said_unused or masks.get("returned", 0) > 0 or masks.get("decoded", 0) == 0:
            return
        recommended = getattr(self.predictor.model, "everything_defaults", None) or {}
        unused = {k: recommended[k] for k in RECOMMENDABLE.get(self.name, ())
                  if k in recommended and hasattr(self, k) and getattr(self, k) != recommended[k]}
        if not unused:
            return
        self._said_unused = True
        cls = type(self).__name__
        used = ", ".join(f"{k}={getattr(self, k):g}" for k in unused)
        theirs = ", ".join(f"{k}={v:g}" for k, v in unused.items())
        call = ", ".join(f"{k}={recommended[k]:g}" for k in RECOMMENDABLE[self.name] if k in recommended)
        warnings.warn(
            f"{cls} returned no masks: its thresholds ({used}) rejected all {masks['decoded']} candidates, but "
            f"the model's checkpoint recommends {theirs} (sam.everything_defaults); use {cls}(sam, {call}), or "
            f"pocketsam.everything.make_generator('{self.name}', sam), which applies them; on the command line, "
            f"leave {' / '.join('--' + k.replace('_', '-') for k in unused)} out",
            UnusedRecommendationWarning, stacklevel=4)  # the caller of generate (under its inference_mode wrapper)


def check_output_mode(output_mode: str) -> None:
    if output_mode not in OUTPUT_MODES:
        raise InputError(f"Unknown output_mode {output_mode!r}; expected one of {', '.join(OUTPUT_MODES)}")


def decode_and_filter(
    predictor: Any,
    prompts: np.ndarray,
    boxes: bool,
    batch_size: int,
    filters: FilterSettings,
    crop: Crop,
    stats: Stats,
    on_kept: KeptHook | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> MaskData:
    """Decode ``prompts`` in batches and keep what passes ``filters``: the one loop every
    generator uses. ``on_batch`` is told the number of prompts of every batch done.

    Args:
        predictor: a :class:`~pocketsam.predictor.SamPredictor` with the crop set.
        prompts: ``N×2`` points (one foreground point each, 3 masks each), or with
            ``boxes`` ``N×K`` rows whose first 4 columns are an XYXY box (1 mask each); in
            the crop's pixels. Columns after the box (e.g. the proposal's row) are not
            decoded, only kept in ``points`` with each surviving mask.
    Returns:
        as :func:`filter_candidates`.
    """
    data = MaskData()
    for (batch,) in batch_iterator(batch_size, prompts):
        with stats.stage("decoding"):
            if boxes:
                low_res, iou_preds = predictor.predict_batch_low_res(boxes=batch[:, :4], multimask_output=False)
            else:
                low_res, iou_preds = predictor.predict_batch_low_res(
                    batch[:, None, :], np.ones((len(batch), 1), np.int32), multimask_output=True)
        with stats.stage("filtering"):
            data.cat(filter_candidates(low_res, iou_preds, batch, predictor, filters, crop, stats, on_kept))
        if on_batch is not None:
            on_batch(len(batch))
    return data


def _chunk_rows(n_pixels: int) -> int:
    return max(1, FULL_RES_CHUNK_BYTES // max(1, 4 * n_pixels))


def filter_candidates(
    low_res: torch.Tensor,
    iou_preds: torch.Tensor,
    prompts: np.ndarray,
    predictor: Any,
    filters: FilterSettings,
    crop: Crop,
    stats: Stats,
    on_kept: KeptHook | None = None,
) -> MaskData:
    """Filter one decoded batch exactly as segment_anything's ``_process_batch``.

    Args:
        low_res: ``B×C×L×L`` logits (L = ``img_size / 4``); iou_preds: ``B×C``.
        prompts: ``B×K`` per-prompt array stored in column ``points`` (crop frame),
            repeated for each of the C masks.
        predictor: the :class:`~pocketsam.predictor.SamPredictor` that decoded them.
        on_kept: called with the full-resolution logits of every chunk of kept masks.
    Returns:
        MaskData with ``rles`` (uncompressed, whole-image frame), ``boxes`` (int64 XYXY,
        crop frame), ``iou_preds``, ``stability_score``, ``points`` (float64, crop frame).
    """
    orig_h, orig_w = crop.image_size
    crop_box = crop.box
    mask_threshold = predictor.model.mask_threshold
    c = low_res.shape[1]
    low = low_res.flatten(0, 1)
    ious = iou_preds.flatten(0, 1)
    pts = torch.as_tensor(np.repeat(prompts, c, axis=0))
    stats.count("decoded", len(ious))

    keep = ious > filters.pred_iou_thresh if filters.pred_iou_thresh > 0.0 else torch.ones_like(ious, dtype=torch.bool)
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
        stab = stability_score(logits, mask_threshold, filters.stability_score_offset)
        ok = stab >= filters.stability_score_thresh if filters.stability_score_thresh > 0.0 else torch.ones_like(stab, dtype=torch.bool)
        if not bool(ok.all()):
            sel, stab, logits = sel[ok], stab[ok], logits[ok]
        n_stable += len(sel)
        if len(sel) == 0:
            continue
        masks = logits > mask_threshold
        boxes = batched_mask_to_box(masks)
        near = is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        # A mask without a pixel (common on images of a few pixels) is no mask, and its
        # stability score is 0/0 (NaN): dropped here, counted in after_edge.
        near |= ~masks.flatten(1).any(dim=1)
        if bool(near.any()):
            far = ~near
            sel, stab, logits, masks, boxes = sel[far], stab[far], logits[far], masks[far], boxes[far]
            if len(sel) == 0:
                continue
        if on_kept is not None:
            on_kept(logits)
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


def empty_data(point_columns: int = 2) -> MaskData:
    """A generator's result with no masks: every column, with 0 rows (``points``:
    ``0×point_columns``)."""
    return MaskData(
        rles=[],
        boxes=np.zeros((0, 4), np.int64),
        iou_preds=np.zeros(0, np.float32),
        stability_score=np.zeros(0, np.float32),
        points=np.zeros((0, point_columns), np.float64),
        crop_boxes=np.zeros((0, 4), np.int64),
    )


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
