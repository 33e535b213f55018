"""Evaluation: metrics (:mod:`pocketsam.eval.metrics`) and the runners behind
``pocketsam eval prompts|coco|everything`` (:mod:`pocketsam.eval.runners`, needs torch)."""

from pocketsam.eval.metrics import (
    IOU_THRESHOLDS,
    average_recall,
    best_iou_per_gt,
    coco_mask_ap,
    mask_iou,
    miou,
    paired_iou,
    recall_at_thresholds,
    rle_iou,
)

__all__ = [
    "IOU_THRESHOLDS", "average_recall", "best_iou_per_gt", "coco_mask_ap", "mask_iou", "miou",
    "paired_iou", "recall_at_thresholds", "rle_iou",
]
