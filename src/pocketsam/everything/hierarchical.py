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

from typing import Any

import numpy as np
import torch

from pocketsam.everything._common import Stats
from pocketsam.everything.grid import SamAutomaticMaskGenerator
from pocketsam.masks import MaskData, build_point_grid


class SamHierarchicalMaskGenerator(SamAutomaticMaskGenerator):
    """Sparse-then-dense grid prompting (TinySAM).

    Args: as :class:`SamAutomaticMaskGenerator`, plus ``high_score_thresh``: logit above
    which a pass-1 mask's pixels count as covered (TinySAM: 8.5).

    ``last_stats["prompts"]`` has ``sparse`` and ``dense`` counts;
    ``last_stats["covered_fraction"]`` the share of the image covered after pass 1
    (averaged over crops).
    """

    name = "hierarchical"

    def __init__(self, model: Any, points_per_side: int | None = 32, *args: Any, high_score_thresh: float = 8.5, **kwargs: Any) -> None:
        super().__init__(model, points_per_side, *args, **kwargs)
        self.high_score_thresh = high_score_thresh

    def _sparse_points(self, crop_size: tuple[int, int], layer: int) -> np.ndarray:
        n_dense = int(round(np.sqrt(len(self.point_grids[layer]))))
        grid = build_point_grid(max(1, n_dense // 4))
        return grid * np.array(crop_size, dtype=np.float64)[None, ::-1]

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        layer: int,
        orig_size: tuple[int, int],
        stats: Stats,
    ) -> MaskData:
        crop_size = self._embed(image, crop_box, stats)
        covered = torch.zeros(crop_size, dtype=torch.bool)
        first = self._run_points(
            self._sparse_points(crop_size, layer),
            crop_size,
            crop_box,
            orig_size,
            stats,
            "sparse",
            covered=covered,
            high_score_thresh=self.high_score_thresh,
        )
        dense = self._crop_points(crop_size, layer)
        ys = np.clip(np.floor(dense[:, 1]).astype(np.int64), 0, crop_size[0] - 1)
        xs = np.clip(np.floor(dense[:, 0]).astype(np.int64), 0, crop_size[1] - 1)
        todo = dense[~covered.numpy()[ys, xs]]
        frac = float(covered.float().mean())
        n = stats.extra.get("_n_cover", 0)
        stats.extra["covered_fraction"] = round((stats.extra.get("covered_fraction", 0.0) * n + frac) / (n + 1), 4)
        stats.extra["_n_cover"] = n + 1
        second = self._run_points(todo, crop_size, crop_box, orig_size, stats, "dense")
        self.predictor.reset_image()
        second.cat(first)  # TinySAM's order: pass-2 candidates first
        return self._finish_crop(second, crop_box, stats)

    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        records = super().generate(image)
        self.last_stats.pop("_n_cover", None)
        return records
