"""MobileSAMv2's object-aware "segment everything": one box prompt per object proposal.

Instead of thousands of grid points, an object detector proposes boxes; each box gives
exactly one mask (``multimask_output=False``). Proposals are filtered by score and
de-duplicated by box NMS first, then decoded in large batches; the masks go through the
same filters, NMS and records as the grid generators.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pocketsam.errors import PocketSamError
from pocketsam.everything._common import (
    Crop,
    FilterSettings,
    MaskGeneratorBase,
    Stats,
    empty_data,
    nms_filter,
    remove_small_regions_and_dedupe,
    to_records,
)
from pocketsam.everything.limits import check_batch_size
from pocketsam.masks import MaskData, batched_nms
from pocketsam.predictor import check_image
from pocketsam.proposals import HeadProposals
from pocketsam.proposals.sources import as_proposal_source, unpack_proposals
from pocketsam.thresholds import MOBILESAMV2_SCORE_THRESH


class ObjectAwareMaskGenerator(MaskGeneratorBase):
    """Box-prompted mask generation (MobileSAMv2).

    Args:
        model: a :class:`pocketsam.models.sam.Sam`, or a
            :class:`~pocketsam.predictor.SamPredictor` to run (its speed mode).
        proposals: default proposal source — a :class:`~pocketsam.proposals.sources.ProposalSource`,
            any callable ``image -> (boxes N×4 XYXY, scores N)``, or an ``N×4`` box array.
            May instead be given to :meth:`generate`. Left out, a model with a proposal
            head (:attr:`Sam.has_proposal_head`) proposes its own boxes from the image
            embedding (:class:`pocketsam.proposals.HeadProposals`).
        score_thresh: keep proposals with score ``>=`` this. ``None``: the recommendation of
            the model's proposal head when it is the source, else 0.4 (MobileSAMv2's).
        proposal_nms_thresh: box-IoU threshold for de-duplicating proposals (0.9).
        boxes_per_batch: boxes decoded together (MobileSAMv2: 320).
        pred_iou_thresh, stability_score_thresh, stability_score_offset, box_nms_thresh,
        min_mask_region_area, output_mode, speed: as :class:`SamAutomaticMaskGenerator`.
            MobileSAMv2 keeps every mask, so the two score thresholds default to 0 (off);
            duplicate masks are still removed by mask-box NMS at 0.7 (1.0 disables).

    Records are segment_anything's, with ``point_coords`` the centre of the prompting
    box and, from the proposal that prompted the mask, ``prompt_box`` (XYXY), ``score``
    (the detection's score) and ``category_id`` (when the source gives one; see
    :class:`~pocketsam.proposals.sources.ProposalSource`). ``crop_box`` is the whole image.
    """

    name = "boxes"

    def __init__(
        self,
        model: Any,
        proposals: Any = None,
        score_thresh: float | None = None,
        proposal_nms_thresh: float = 0.9,
        boxes_per_batch: int = 320,
        pred_iou_thresh: float = 0.0,
        stability_score_thresh: float = 0.0,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        speed: str | None = None,
    ) -> None:
        boxes_per_batch = check_batch_size(boxes_per_batch, "boxes_per_batch")
        filters = FilterSettings(pred_iou_thresh, stability_score_thresh, stability_score_offset)
        super().__init__(model, filters, box_nms_thresh, min_mask_region_area, output_mode, speed)
        model = self.predictor.model
        self.proposals = as_proposal_source(proposals) if proposals is not None else None
        if self.proposals is None and model.proposal_head is not None:
            self.proposals = HeadProposals(model.proposal_head)
        if score_thresh is None and self.proposals is not None and self.proposals.score_thresh is not None:
            score_thresh = self.proposals.score_thresh
        if score_thresh is None:
            score_thresh = MOBILESAMV2_SCORE_THRESH
        self.score_thresh = score_thresh
        self.proposal_nms_thresh = proposal_nms_thresh
        self.boxes_per_batch = boxes_per_batch

    def select_proposals(self, boxes: np.ndarray, scores: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Clip to the image, drop empty boxes and low scores, de-duplicate by NMS.

        Returns kept ``N×4`` XYXY boxes and scores, by decreasing score.
        """
        boxes, scores, _ = self._select(boxes, scores, image_size)
        return boxes, scores

    def _select(self, boxes: np.ndarray, scores: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`select_proposals`, plus the index of each kept proposal in the input."""
        h, w = image_size
        boxes = boxes.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        ok = (scores >= self.score_thresh) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        index = np.flatnonzero(ok)
        boxes, scores = boxes[ok], scores[ok]
        if len(boxes) == 0:
            return boxes, scores, index
        keep = batched_nms(
            torch.as_tensor(boxes, dtype=torch.float32),
            torch.as_tensor(scores, dtype=torch.float32),
            torch.zeros(len(boxes), dtype=torch.int64),
            self.proposal_nms_thresh,
        ).numpy()
        return boxes[keep], scores[keep], index[keep]

    @torch.inference_mode()
    def generate(self, image: np.ndarray, proposals: Any = None) -> list[dict[str, Any]]:
        """Masks for the objects proposed in ``image`` (uint8 H×W×3).

        Args:
            proposals: overrides the source given at construction for this call.
        Returns:
            records as :meth:`SamAutomaticMaskGenerator.generate`; ``[]`` when there
            are no proposals (the image is then not even embedded).
        """

        image = check_image(image)
        source = as_proposal_source(proposals) if proposals is not None else self.proposals
        if source is None:
            raise PocketSamError(
                "no box proposals: this model has no proposal head and none were given",
                "pass proposals= (CLI: --boxes DETECTIONS.json), or train a head with `pocketsam train-proposals`",
            )
        stats = Stats(self.name)
        h, w = int(image.shape[0]), int(image.shape[1])
        stats.extra["image_size"] = [h, w]
        embedded = source.uses_embedding
        if embedded:  # the proposals come from the image embedding itself
            with stats.stage("embedding"):
                self.predictor.set_image(image)
        with stats.stage("proposals"):
            boxes, scores, categories = unpack_proposals(
                source.from_predictor(self.predictor) if embedded else source(image), source)
            raw = len(boxes)
            boxes, scores, picked = self._select(boxes, scores, (h, w))
            scores = scores.astype(np.float64)
            categories = [categories[i] for i in picked] if categories is not None else None
        stats.extra["proposals"] = {"raw": raw, "after_score_and_nms": len(boxes)}
        stats.add_prompts("boxes", len(boxes))
        data = MaskData()
        if len(boxes):
            if not embedded:
                with stats.stage("embedding"):
                    self.predictor.set_image(image)
            # each prompt carries its proposal's row in column 4, through every filter
            prompts = np.concatenate([boxes, np.arange(len(boxes), dtype=np.float64)[:, None]], axis=1)
            data = self._decode(prompts, True, self.boxes_per_batch, Crop([0, 0, w, h], (h, w)), stats)
            with stats.stage("filtering"):
                if len(data) and self.box_nms_thresh < 1.0:
                    nms_filter(data, torch.as_tensor(data["iou_preds"]), self.box_nms_thresh)
            stats.count("after_box_nms", len(data))
        self.predictor.reset_image()
        if len(data) == 0:
            data = empty_data(point_columns=5)
        else:
            data["crop_boxes"] = torch.tensor([[0, 0, w, h]] * len(data), dtype=torch.int64)
        data.to_numpy()
        prompts = np.asarray(data["points"], dtype=np.float64).reshape(-1, 5)
        data["prompt_boxes"] = prompts[:, :4]
        data["proposal"] = prompts[:, 4].astype(np.int64)
        data["points"] = np.stack([(prompts[:, 0] + prompts[:, 2]) / 2, (prompts[:, 1] + prompts[:, 3]) / 2], axis=1)
        with stats.stage("postprocess"):
            if self.min_mask_region_area > 0 and len(data):
                data = remove_small_regions_and_dedupe(data, self.min_mask_region_area, self.box_nms_thresh)
                stats.count("after_small_regions", len(data))
            rows = np.asarray(data["proposal"], dtype=np.int64).reshape(-1)
            extra: dict[str, list[Any]] = {
                "prompt_box": np.asarray(data["prompt_boxes"]).reshape(-1, 4).tolist(),
                "score": scores[rows].tolist(),
            }
            if categories is not None:
                extra["category_id"] = [categories[i] for i in rows]
            records = to_records(data, self.output_mode, extra=extra)
            for rec in records:
                if rec.get("category_id", 0) is None:  # a proposal without a category
                    del rec["category_id"]
        stats.count("returned", len(records))
        self._finished(stats)  # last_stats; says so when the checkpoint's thresholds would have kept masks
        return records
