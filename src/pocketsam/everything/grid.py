"""Grid-prompted "segment everything": drop-in for segment_anything's
``SamAutomaticMaskGenerator``.

Same constructor, same algorithm, same masks and records as the reference; faster
because candidates are filtered before they are upsampled and because every step is
batched (see :mod:`pocketsam.everything._common`).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from pocketsam.errors import InputError
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
from pocketsam.everything.limits import check_batch_size, check_everything_work
from pocketsam.masks import (
    MaskData,
    box_area,
    build_all_layer_point_grids,
    generate_crop_boxes,
    uncrop_boxes_xyxy,
    uncrop_points,
)
from pocketsam.predictor import check_image


class SamAutomaticMaskGenerator(MaskGeneratorBase):
    """Prompt a regular grid of points, keep the good, distinct masks.

    Args:
        model: a :class:`pocketsam.models.sam.Sam` (e.g. from :func:`pocketsam.build_sam`),
            or a :class:`~pocketsam.predictor.SamPredictor` to run (its speed mode).
        points_per_side: grid points along each side (``n²`` prompts); None when
            ``point_grids`` is given.
        points_per_batch: prompts decoded together (3 masks each).
        pred_iou_thresh: keep masks whose predicted IoU is ``>`` this (0 disables).
        stability_score_thresh: keep masks whose stability score is ``>=`` this (0 disables).
        stability_score_offset: logit offset of the stability score's two thresholds.
        box_nms_thresh: box-IoU threshold of the per-crop NMS.
        crop_n_layers: extra layers of crops (layer i: ``(2**i)²`` crops).
        crop_nms_thresh: box-IoU threshold of the NMS across crops (smaller crops win).
        crop_overlap_ratio: crop overlap as a fraction of the short side (layer 1).
        crop_n_points_downscale_factor: layer i uses ``points_per_side / factor**i``.
        point_grids: explicit normalised ``N×2`` grids, one per layer.
        min_mask_region_area: fill holes / drop islands smaller than this (px); 0 = off.
        output_mode: ``"binary_mask"`` | ``"uncompressed_rle"`` | ``"coco_rle"``.
        speed: the predictor's speed mode (``SamPredictor(model, mode=speed)``: e.g.
            ``"fast"``, ``"int8"``; ``None`` is the model's own preference).

    The three filter arguments are kept as :attr:`filters` (a
    :class:`~pocketsam.everything._common.FilterSettings`; the attributes of the same
    names read and set it). After :meth:`generate`, :attr:`last_stats` holds prompts,
    candidate counts after each filter and seconds per stage.
    """

    name = "grid"

    def __init__(
        self,
        model: Any,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        speed: str | None = None,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise InputError("Exactly one of points_per_side or point_grids must be provided.")
        if points_per_side is not None and points_per_side < 1:
            raise InputError(f"points_per_side must be >= 1, got {points_per_side}")
        # the work is bounded before the grids are built (points_per_side=100000: a 74 GiB grid)
        check_everything_work(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        if points_per_side is not None:
            self.point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            self.point_grids = [np.asarray(g, dtype=np.float64) for g in point_grids]  # type: ignore[union-attr]
            if len(self.point_grids) < crop_n_layers + 1:
                raise InputError(f"point_grids needs one grid per crop layer ({crop_n_layers + 1})")
        if points_per_batch < 1:
            raise InputError(f"points_per_batch must be >= 1, got {points_per_batch}")
        check_batch_size(points_per_batch)  # its masks are held at once
        filters = FilterSettings(pred_iou_thresh, stability_score_thresh, stability_score_offset)
        super().__init__(model, filters, box_nms_thresh, min_mask_region_area, output_mode, speed)
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor

    # ------------------------------------------------------------------ public
    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks for the whole image.

        Args:
            image: ``uint8`` H×W×3 RGB.
        Returns:
            one record per mask: ``segmentation`` (H×W bool array or RLE dict per
            ``output_mode``), ``area`` (int), ``bbox`` (XYWH), ``predicted_iou``,
            ``point_coords`` (``[[x, y]]``), ``stability_score``, ``crop_box`` (XYWH).
        """

        image = check_image(image)
        stats = Stats(self.name)
        data = self._generate_masks(image, stats)
        with stats.stage("postprocess"):
            if self.min_mask_region_area > 0:
                data = remove_small_regions_and_dedupe(
                    data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
                )
                stats.count("after_small_regions", len(data))
            records = to_records(data, self.output_mode)
        stats.count("returned", len(records))
        stats.extra["image_size"] = [int(image.shape[0]), int(image.shape[1])]
        self._finished(stats)  # last_stats; says so when the checkpoint's thresholds would have kept masks
        return records

    # ------------------------------------------------------------------ internals
    def _generate_masks(self, image: np.ndarray, stats: Stats) -> MaskData:
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, self.crop_n_layers, self.crop_overlap_ratio)
        # Deep crop layers on a small image give crops less than one pixel wide or high
        # (a 1×1 image has no 2×2 split), or the same pixels as an earlier crop: they hold
        # nothing new to segment (an encoder pass each), so they are skipped.
        kept, seen = [], set()
        for box, layer in zip(crop_boxes, layer_idxs):
            if box[2] > box[0] and box[3] > box[1] and tuple(box) not in seen:
                kept.append((box, layer))
                seen.add(tuple(box))
        if len(kept) < len(crop_boxes):
            stats.extra["crops_skipped"] = len(crop_boxes) - len(kept)
        crop_boxes, layer_idxs = [b for b, _ in kept], [layer for _, layer in kept]
        stats.extra["crops"] = len(crop_boxes)
        data = MaskData()
        for crop_box, layer in zip(crop_boxes, layer_idxs):
            data.cat(self._process_crop(image, crop_box, layer, orig_size, stats))
        if len(crop_boxes) > 1 and len(data) > 0:
            with stats.stage("filtering"):
                # Prefer masks from smaller crops.
                scores = 1 / box_area(torch.as_tensor(data["crop_boxes"]))
                nms_filter(data, scores, self.crop_nms_thresh)
            stats.count("after_crop_nms", len(data))
        if len(data) == 0:
            data = empty_data()
        data.to_numpy()
        return data

    def _embed(self, image: np.ndarray, crop_box: list[int], stats: Stats) -> tuple[int, int]:
        x0, y0, x1, y1 = crop_box
        with stats.stage("embedding"):
            self.predictor.set_image(np.ascontiguousarray(image[y0:y1, x0:x1, :]))
        return (y1 - y0, x1 - x0)

    def _crop_points(self, crop_size: tuple[int, int], layer: int) -> np.ndarray:
        """The grid of ``layer`` in the crop's pixels, ``N×2`` (x, y)."""
        scale = np.array(crop_size, dtype=np.float64)[None, ::-1]
        return self.point_grids[layer] * scale

    def _point_passes(self, crop_size: tuple[int, int], layer: int, stats: Stats) -> Iterator[tuple[str, np.ndarray]]:
        """Hook: the point prompts of one crop, pass by pass, as ``(name, N×2 points in the
        crop's pixels)``; a pass is decoded (and :meth:`_on_kept` has seen its masks)
        before the next is asked for. Here: the grid, in one pass."""
        yield self.name, self._crop_points(crop_size, layer)

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        layer: int,
        orig_size: tuple[int, int],
        stats: Stats,
    ) -> MaskData:
        crop = Crop(crop_box, orig_size)
        crop_size = self._embed(image, crop_box, stats)
        data = MaskData()
        for pass_name, points in self._point_passes(crop_size, layer, stats):
            stats.add_prompts(pass_name, len(points))
            found = self._decode(points, False, self.points_per_batch, crop, stats)
            found.cat(data)  # a later pass's candidates first (TinySAM's order)
            data = found
        self.predictor.reset_image()
        return self._finish_crop(data, crop_box, stats)

    def _finish_crop(self, data: MaskData, crop_box: list[int], stats: Stats) -> MaskData:
        """Per-crop NMS, then back to the whole-image frame."""
        with stats.stage("filtering"):
            nms_filter(data, torch.as_tensor(data["iou_preds"]) if len(data) else torch.zeros(0), self.box_nms_thresh)
        stats.count("after_box_nms", len(data))
        if len(data) == 0:
            return MaskData()
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor([crop_box] * len(data), dtype=torch.int64)
        return data

