"""TinySAM's hierarchical "segment everything".

Pass 1 prompts a sparse grid (``points_per_side // 4`` a side). Every mask that survives
the filters marks its *confident* pixels — logits above ``high_score_thresh`` (8.5) —
as covered. Pass 2 prompts only the points of the dense grid (``points_per_side`` a
side) that fall outside the covered area. The candidates of both passes are then
de-duplicated and post-processed exactly as in :class:`SamAutomaticMaskGenerator`.

Differences from TinySAM's reference code, on purpose: pass 2 uses the regular dense grid
(cell centres, as segment_anything) instead of integer-stride offsets around each sparse
point, the coverage test reads the map at ``[floor(y), floor(x)]`` of each dense point,
records carry ``crop_box`` like the other generators, and crop layers are supported
(each crop runs both passes).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from pocketsam.everything._common import Stats
from pocketsam.everything.grid import SamAutomaticMaskGenerator
from pocketsam.masks import build_point_grid


class SamHierarchicalMaskGenerator(SamAutomaticMaskGenerator):
    """Sparse-then-dense grid prompting (TinySAM).

    Args: as :class:`SamAutomaticMaskGenerator`, plus ``high_score_thresh``: logit above
    which a pass-1 mask's pixels count as covered (TinySAM: 8.5). The arguments come in
    TinySAM's order (``high_score_thresh`` fifth, before ``stability_score_thresh``), and
    :meth:`hierarchical_generate` is TinySAM's name for :meth:`generate`, so code written
    for ``tinysam.SamHierarchicalMaskGenerator`` runs unchanged.

    ``last_stats["prompts"]`` has ``sparse`` and ``dense`` counts;
    ``last_stats["covered_fraction"]`` the share of the image covered after pass 1
    (averaged over crops).

    The two passes are :meth:`_point_passes`; the covered map is filled by the
    kept-mask hook :meth:`_on_kept` during pass 1.
    """

    name = "hierarchical"

    def __init__(
        self,
        model: Any,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        high_score_thresh: float = 8.5,
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
        super().__init__(
            model, points_per_side=points_per_side, points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset, box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh, crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor, point_grids=point_grids,
            min_mask_region_area=min_mask_region_area, output_mode=output_mode, speed=speed,
        )
        self.high_score_thresh = high_score_thresh
        self._covered: torch.Tensor | None = None  # the crop's confident pixels, during pass 1

    def _sparse_points(self, crop_size: tuple[int, int], layer: int) -> np.ndarray:
        n_dense = int(round(np.sqrt(len(self.point_grids[layer]))))
        grid = build_point_grid(max(1, n_dense // 4))
        return grid * np.array(crop_size, dtype=np.float64)[None, ::-1]

    def _point_passes(self, crop_size: tuple[int, int], layer: int, stats: Stats) -> Iterator[tuple[str, np.ndarray]]:
        """Pass 1: the sparse grid, marking confident pixels as covered (:meth:`_on_kept`);
        pass 2: the dense grid's points outside the covered area."""
        self._covered = torch.zeros(crop_size, dtype=torch.bool)
        yield "sparse", self._sparse_points(crop_size, layer)
        covered, self._covered = self._covered, None
        dense = self._crop_points(crop_size, layer)
        ys = np.clip(np.floor(dense[:, 1]).astype(np.int64), 0, crop_size[0] - 1)
        xs = np.clip(np.floor(dense[:, 0]).astype(np.int64), 0, crop_size[1] - 1)
        stats.average("covered_fraction", float(covered.float().mean()))
        yield "dense", dense[~covered.numpy()[ys, xs]]

    def _on_kept(self, logits: torch.Tensor) -> None:
        """Pass 1: OR the kept masks' confident pixels (logit > ``high_score_thresh``) into
        the crop's covered map."""
        if self._covered is not None:
            self._covered |= (logits > self.high_score_thresh).any(dim=0)

    def hierarchical_generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """TinySAM's name for :meth:`generate` (``mask_generator.hierarchical_generate(image)``
        in TinySAM's demo); the same records, plus ``crop_box`` as the other generators'."""
        return self.generate(image)
