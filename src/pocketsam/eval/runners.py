"""The evaluations behind ``pocketsam eval prompts|coco|everything``.

Each runner takes a model and samples, shows a tqdm bar, and returns a flat dict of
JSON-ready numbers (``None`` where a number is undefined).

Protocols
---------
* **prompts / point** — one positive click at the mask pixel farthest from the mask
  boundary (Euclidean distance transform of the mask padded with background, so the
  image border counts as boundary); three masks are predicted and the one with the
  highest predicted IoU is kept. Clicks are integer pixel indices (SAM's prompt encoder
  adds the half-pixel itself).
* **prompts / box** — the mask's tight box ``x0, y0, x1, y1`` in inclusive pixel indices
  (SAM's ``batched_mask_to_box`` convention), one mask predicted.
* **coco** — every detector box (COCO ``[x, y, w, h]`` → ``[x, y, x+w, y+h]``) is a box
  prompt giving one mask; the detection's score and category are carried over and the
  masks are scored by pycocotools COCOeval (``segm``).
* **everything** — a mask generator runs on each image; proposals are ranked by predicted
  IoU and mask AR@100 / AR@1000 are computed as in MobileSAMv2 (see
  :mod:`pocketsam.eval.metrics`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pocketsam.checkpoints import default_checkpoint
from pocketsam.data.sample import Sample
from pocketsam.errors import InputError, PocketSamError
from pocketsam.eval.metrics import (
    average_recall,
    best_iou_per_gt,
    coco_mask_ap,
    miou,
    paired_iou,
    rle_iou,
)
from pocketsam.proposals.sources import BoxesProposals, check_matched
from pocketsam.masks import batched_mask_to_box, encode_rle, farthest_point
from pocketsam.predictor import SamPredictor
from pocketsam.runtime.load import build_sam

#: COCO area ranges used to split mIoU by object size.
AREA_RANGES = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, math.inf)}


# ---------------------------------------------------------------------------- helpers


def load_model(checkpoint: str | Path | None = None, model_type: str | None = None, device: str | None = None):
    """Build the model to evaluate. Without ``checkpoint`` the bundled model is used
    (:func:`pocketsam.checkpoints.default_checkpoint`), which raises a clear
    :class:`~pocketsam.errors.CheckpointError` when this installation has none."""

    if checkpoint is None:
        checkpoint = default_checkpoint()
    return build_sam(model_type=model_type, checkpoint=checkpoint, device=device)


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not progress)


def _first(samples: Sequence[Sample], max_images: int | None) -> list[int]:
    if max_images is not None and max_images < 1:
        raise InputError(f"--max-images must be >= 1, got {max_images}")
    n = len(samples) if max_images is None else min(max_images, len(samples))
    return list(range(n))


def _clean(x: Any) -> Any:
    """NaN/inf → None, numpy scalars → Python (JSON-ready)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ---------------------------------------------------------------------------- prompts


def eval_prompts(
    sam: Any,
    samples: Sequence[Sample],
    prompt: str = "point",
    max_images: int | None = None,
    max_masks_per_image: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    teacher: Any = None,
) -> dict[str, Any]:
    """Single-prompt mIoU over every non-crowd instance of the first ``max_images`` samples.

    Args:
        teacher: another model (any input size): also report how closely ``sam``'s masks
            follow the teacher's for the same prompts, the teacher's mask chosen by the
            same rule (MobileSAM's headline metric).
    Returns:
        ``miou``, ``num_masks``, ``num_images``, ``num_masks_skipped_empty`` (ground-truth
        masks with no pixel, which admit no prompt), ``prompt``, ``miou_small|medium|large``
        (COCO area ranges of the ground truth), ``iou_above_50|75|90`` (share of masks with
        IoU ≥ threshold), ``seconds_per_image`` (``sam`` only); with a teacher also
        ``miou_vs_teacher`` (mean IoU of ``sam``'s mask with the teacher's; 1.0 where both
        are empty).
    """

    if prompt not in ("point", "box"):
        raise InputError(f"unknown prompt type '{prompt}'", "use 'point' or 'box'")
    predictor = SamPredictor(sam)
    teacher_predictor = SamPredictor(teacher) if teacher is not None else None
    ious: list[float] = []
    vs_teacher: list[float] = []
    areas: list[float] = []
    indices = _first(samples, max_images)
    t_model = 0.0
    skipped_empty = 0
    with _bar(len(indices), f"eval prompts ({prompt})", progress) as bar:
        for i in indices:
            sample = samples[i]
            instances = [inst for inst in sample.instances if not inst.iscrowd]
            if max_masks_per_image is not None:
                instances = instances[:max_masks_per_image]
            if instances:
                image = sample.load_image()
                t0 = time.perf_counter()
                predictor.set_image(image)
                t_model += time.perf_counter() - t0
                if teacher_predictor is not None:
                    teacher_predictor.set_image(image)
                for s in range(0, len(instances), batch_size):
                    chunk = instances[s : s + batch_size]
                    gt = np.stack([inst.mask for inst in chunk])
                    keep = gt.reshape(len(gt), -1).any(1)
                    skipped_empty += int((~keep).sum())  # e.g. sub-pixel COCO polygons: no prompt possible
                    gt = gt[keep]
                    if len(gt) == 0:
                        continue
                    t0 = time.perf_counter()
                    pred = _predict_batch(predictor, gt, prompt)
                    t_model += time.perf_counter() - t0
                    ious.extend(paired_iou(pred, gt).tolist())
                    if teacher_predictor is not None:  # the same prompts, the same choice of mask
                        vs_teacher.extend(paired_iou(pred, _predict_batch(teacher_predictor, gt, prompt), 1.0).tolist())
                    areas.extend(gt.reshape(len(gt), -1).sum(1).tolist())
            bar.update()
    iou_arr = np.asarray(ious)
    area_arr = np.asarray(areas)
    out: dict[str, Any] = {
        "miou": miou(iou_arr),
        "num_masks": len(iou_arr),
        "num_images": len(indices),
        "num_masks_skipped_empty": skipped_empty,
        "prompt": prompt,
    }
    for name, (lo, hi) in AREA_RANGES.items():
        sel = (area_arr >= lo) & (area_arr < hi)
        out[f"miou_{name}"] = miou(iou_arr[sel])
        out[f"num_masks_{name}"] = int(sel.sum())
    for t in (50, 75, 90):
        out[f"iou_above_{t}"] = float((iou_arr >= t / 100).mean()) if iou_arr.size else None
    out["seconds_per_image"] = t_model / max(1, len(indices))
    if teacher is not None:
        out["miou_vs_teacher"] = miou(vs_teacher)
        vs_arr = np.asarray(vs_teacher)
        for name, (lo, hi) in AREA_RANGES.items():
            out[f"miou_vs_teacher_{name}"] = miou(vs_arr[(area_arr >= lo) & (area_arr < hi)])
    return _clean(out)


def _predict_batch(predictor: Any, gt: np.ndarray, prompt: str) -> np.ndarray:
    """Predicted masks (B×H×W bool) for a batch of ground-truth masks under the protocol."""
    if prompt == "point":
        pts = np.array([farthest_point(m) for m in gt], np.float32)[:, None, :]  # B×1×2
        labels = torch.ones(len(gt), 1, dtype=torch.int)
        masks, scores, _ = predictor.predict_batch(torch.from_numpy(pts), labels, multimask_output=True)
        best = scores.argmax(1)
        chosen = masks[torch.arange(len(gt)), best]
    else:
        boxes = batched_mask_to_box(torch.from_numpy(gt)).float()  # tight, inclusive edges
        masks, _, _ = predictor.predict_batch(boxes=boxes, multimask_output=False)
        chosen = masks[:, 0]
    return chosen.cpu().numpy().astype(bool)


# ---------------------------------------------------------------------------- coco


def eval_coco(
    sam: Any,
    reader: Any,
    detections: Sequence[dict[str, Any]],
    max_images: int | None = None,
    max_detections_per_image: int = 100,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, Any]:
    """COCO mask AP of box-prompted masks.

    Args:
        reader: a :class:`pocketsam.data.coco.CocoReader` (ground truth incl. crowd).
        detections: COCO results with boxes, checked
            (:attr:`pocketsam.proposals.sources.CocoDetections.detections`).
        max_detections_per_image: highest-scoring detections kept per image.
    Returns:
        :data:`pocketsam.eval.metrics.COCO_STAT_NAMES` plus ``num_images``,
        ``num_detections`` and ``seconds_per_image``.
    """

    by_image: dict[int, list[dict[str, Any]]] = {}
    for d in detections:
        by_image.setdefault(d["image_id"], []).append(d)
    predictor = SamPredictor(sam)
    indices = _first(reader, max_images)
    results: list[dict[str, Any]] = []
    image_ids: list[int] = []
    t_model = 0.0
    with _bar(len(indices), "eval coco", progress) as bar:
        for i in indices:
            sample = reader[i]
            image_ids.append(sample.image_id)
            dets = sorted(by_image.get(sample.image_id, []), key=lambda d: -float(d.get("score", 1.0)))
            dets = dets[:max_detections_per_image]
            if dets:
                image = sample.load_image()
                t0 = time.perf_counter()
                predictor.set_image(image)
                for s in range(0, len(dets), batch_size):
                    chunk = dets[s : s + batch_size]
                    xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in chunk)], dtype=torch.float32)
                    masks, _, _ = predictor.predict_batch(boxes=xyxy, multimask_output=False)
                    for d, m in zip(chunk, masks[:, 0].cpu().numpy()):
                        results.append(
                            {
                                "image_id": sample.image_id,
                                "category_id": d.get("category_id", 1),
                                "segmentation": encode_rle(m),
                                "score": float(d.get("score", 1.0)),
                            }
                        )
                t_model += time.perf_counter() - t0
            bar.update()
    stats = coco_mask_ap(reader.dataset, results, image_ids=image_ids)
    out = dict(stats)
    out.update(num_images=len(indices), num_detections=len(results), seconds_per_image=t_model / max(1, len(indices)))
    return _clean(out)


# ---------------------------------------------------------------------------- everything

def _prompt_count(stats: Any) -> float | None:
    """Number of prompts the generator used on the last image, from its ``last_stats``."""
    if not isinstance(stats, dict):
        return None
    if isinstance(stats.get("prompts_total"), (int, float)):
        return float(stats["prompts_total"])
    prompts = stats.get("prompts")
    if isinstance(prompts, dict):  # prompts per pass
        return float(sum(v for v in prompts.values() if isinstance(v, (int, float))))
    if isinstance(prompts, (int, float)):
        return float(prompts)
    return None


def _record_rle(seg: Any) -> dict[str, Any]:
    if isinstance(seg, np.ndarray):
        return encode_rle(seg)
    if isinstance(seg, torch.Tensor):
        return encode_rle(seg.cpu().numpy())
    if isinstance(seg, dict) and "counts" in seg:
        return seg
    raise PocketSamError(f"mask generator returned an unsupported segmentation type {type(seg).__name__}")


def eval_everything(
    generator: Any,
    samples: Sequence[Sample],
    max_images: int | None = None,
    ks: Sequence[int] = (100, 1000),
    boxes: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    progress: bool = True,
    desc: str = "eval everything",
    boxes_source: str = "the proposals",
) -> dict[str, Any]:
    """Mask AR@K of a "segment everything" generator.

    Args:
        generator: has ``generate(image) -> list of {"segmentation", "predicted_iou", ...}``
            and optionally ``last_stats`` (prompt counts).
        boxes: per-image box proposals ``(N×4 xyxy, N scores)`` (object-aware mode),
            passed as ``generate(image, proposals=BoxesProposals(boxes, scores))``;
            images without an entry get no proposals. Proposals for none of the
            evaluated images are reported (:func:`~pocketsam.proposals.sources.check_matched`:
            a warning with counts, an error when none is for any; ``boxes_source``
            names them in the messages).
    Returns:
        ``ar@K`` for each K, ``recall@50@K``, ``precision@50`` (share of all returned
        masks that overlap a ground-truth mask at IoU ≥ 0.5), ``num_gt``, ``num_images``,
        ``proposals_per_image``, ``prompts_per_image`` (``None`` if the generator does not
        report it), ``seconds_per_image`` (generation only).
    """
    indices = _first(samples, max_images)
    best: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    seconds: list[float] = []
    prompts: list[float] = []
    proposals: list[int] = []
    matched: list[np.ndarray] = []  # per proposal: does it overlap some ground truth at IoU >= 0.5
    image_ids: list[int] = []
    with _bar(len(indices), desc, progress) as bar:
        for i in indices:
            sample = samples[i]
            image_ids.append(sample.image_id)
            image = sample.load_image()
            t0 = time.perf_counter()
            if boxes is not None:
                b, s = boxes.get(sample.image_id, (np.zeros((0, 4)), np.zeros(0)))
                records = generator.generate(image, proposals=BoxesProposals(b, s))
            else:
                records = generator.generate(image)
            seconds.append(time.perf_counter() - t0)
            n_prompts = _prompt_count(generator.last_stats)
            if n_prompts is not None:
                prompts.append(n_prompts)
            proposals.append(len(records))
            gt = [inst.rle for inst in sample.instances if not inst.iscrowd]
            pred = [_record_rle(r["segmentation"]) for r in records]
            scores = [float(r.get("predicted_iou", 0.0)) for r in records]
            ious = rle_iou(gt, pred)
            matched.append(ious.max(0) >= 0.5 if len(gt) else np.zeros(len(pred), bool))
            for k in ks:
                best[k].append(best_iou_per_gt(ious, scores, k))
            bar.update()
    if boxes is not None:
        check_matched(boxes, image_ids, boxes_source, f"the {len(indices)} image(s) evaluated")
    out: dict[str, Any] = {}
    for k in ks:
        all_best = np.concatenate(best[k]) if best[k] else np.zeros(0)
        out[f"ar@{k}"] = average_recall(all_best)
        out[f"recall@50@{k}"] = float((all_best >= 0.5).mean()) if all_best.size else None
    all_matched = np.concatenate(matched) if matched else np.zeros(0, bool)
    out["precision@50"] = float(all_matched.mean()) if all_matched.size else None
    out["num_gt"] = int(sum(len(b) for b in best[ks[0]])) if ks else 0
    out["num_images"] = len(indices)
    out["proposals_per_image"] = float(np.mean(proposals)) if proposals else None
    out["prompts_per_image"] = float(np.mean(prompts)) if prompts else None
    out["seconds_per_image"] = float(np.mean(seconds)) if seconds else None
    return _clean(out)

