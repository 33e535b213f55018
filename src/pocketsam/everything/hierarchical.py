"""TinySAM's hierarchical "segment everything".

Pass 1 prompts a sparse grid (``points_per_side // 4`` a side). Every mask that survives
the filters marks its *confident* pixels — logits above ``high_score_thresh`` (8.5) —
as covered. Pass 2 prompts dense points that fall outside the covered area. The
candidates of both passes are then de-duplicated and post-processed exactly as in
:class:`SamAutomaticMaskGenerator`.

Where pass 2 puts its points is ``dense_layout``:

* ``"tinysam"`` (the default): TinySAM's own layout. Around each sparse point ``(x, y)``,
  the points ``(x + i·w, y + j·h)`` for ``i, j`` in ``{-1, 0, 1, 2}`` except ``(0, 0)``
  (the sparse point, already prompted), with integer strides ``w = W // points_per_side``
  and ``h = H // points_per_side``; points beyond the image are skipped (in TinySAM's
  code only the ``+2`` column and row can leave it). Sparse points are about four
  dense strides apart, so the 4×4 blocks tile the image at the dense stride. Same prompts,
  in the same order and to the same bits, as TinySAM's ``hierarchical_generate``, hence
  the same masks on the same model (``tests/test_hierarchical_layout.py``).
* ``"grid"``: the regular dense grid of segment_anything (cell centres,
  ``points_per_side²``), pocketsam's earlier layout. When ``points_per_side`` (n) is a
  multiple of 4 and divides the sides, TinySAM's points lie on the lattice ``w, 2w, …,
  (n−1)·w`` (one column and one row fewer than the grid) without the sparse points,
  at most ``(n−1)² − (n/4)²`` (897 for n = 32) against the grid's ``n²`` (1024); they lie
  between the grid's points, so the two layouts find different masks. Measured
  difference: ``docs/everything.md`` (``bench/hierarchical_layout.py``).

A dense point counts as covered when the covered map is set at ``[int(y), int(x)]``.
Beyond TinySAM's code, on purpose: records carry ``crop_box`` like the other generators,
crop layers are supported (each crop runs both passes, in the crop's own pixels and with
its layer's ``points_per_side``), an empty pass 2 is allowed, and each distinct point is
decoded once (only a side shorter than ``points_per_side``, i.e. a zero stride, makes
TinySAM's layout repeat points; the repeats give the same masks).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from pocketsam.errors import InputError
from pocketsam.everything._common import Stats
from pocketsam.everything.grid import SamAutomaticMaskGenerator
from pocketsam.masks import build_point_grid

#: The values of ``dense_layout``: where pass 2 puts its prompts.
DENSE_LAYOUTS = ("tinysam", "grid")

# TinySAM's pass-2 offsets around a sparse point, in dense strides (i along x, j along y),
# in the order its loops visit them: the 3×3 block without its centre (i outer), then the
# column i = 2, the row j = 2, and their corner. The order decides the candidates' order,
# which decides which of two equally scored duplicates NMS keeps.
_TINYSAM_OFFSETS = np.array(
    [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
    + [(2, j) for j in (-1, 0, 1)] + [(i, 2) for i in (-1, 0, 1)] + [(2, 2)],
    dtype=np.float64,
)


def tinysam_dense_points(sparse: np.ndarray, size: tuple[int, int], points_per_side: int) -> np.ndarray:
    """TinySAM's pass-2 candidates around each sparse point, before the coverage test.

    Args:
        sparse: ``P×2`` sparse points ``(x, y)`` in pixels (pass 1's prompts).
        size: ``(H, W)`` of the embedded image (the crop).
        points_per_side: the dense grid's points a side (sets the strides ``W // n``, ``H // n``).
    Returns:
        ``N×2`` float64 points ``(x, y)`` in pixels, sparse point by sparse point, each one's
        offsets in TinySAM's order, only those inside ``[0, W) × [0, H)``; no point twice
        and none on a sparse point.
    """
    h, w = size
    stride = np.array([w // points_per_side, h // points_per_side], dtype=np.float64)
    pts = (sparse[:, None, :] + _TINYSAM_OFFSETS[None] * stride).reshape(-1, 2)
    # For points_per_side >= 4 this keeps exactly what TinySAM keeps: its "x + 2w < W" and
    # "y + 2h < H" tests; the other offsets always lie inside (sparse points are at least
    # 2W/n from the border, the strides at most W/n).
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    pts = pts[inside]
    # TinySAM stores the points normalised (÷ size) and scales them back (× size) before
    # decoding; doing the same round trip keeps the prompts identical to the last bit.
    scale = np.array([w, h], dtype=np.float64)
    pts = (pts / scale) * scale
    # A zero stride (a side shorter than points_per_side) stacks offsets on one point.
    _, first = np.unique(pts, axis=0, return_index=True)
    pts = pts[np.sort(first)]
    on_sparse = (pts[:, None, :] == sparse[None, :, :]).all(-1).any(-1)
    return pts[~on_sparse]


def uncovered(points: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """The points (``N×2`` ``(x, y)`` pixels inside the map) where ``covered`` (H×W bool)
    is not set at ``[int(y), int(x)]``, in their order."""
    h, w = covered.shape
    ys = np.clip(np.floor(points[:, 1]).astype(np.int64), 0, h - 1)
    xs = np.clip(np.floor(points[:, 0]).astype(np.int64), 0, w - 1)
    return points[~covered[ys, xs]]


class SamHierarchicalMaskGenerator(SamAutomaticMaskGenerator):
    """Sparse-then-dense grid prompting (TinySAM).

    Args: as :class:`SamAutomaticMaskGenerator`, plus

    * ``high_score_thresh``: logit above which a pass-1 mask's pixels count as covered
      (TinySAM: 8.5);
    * ``dense_layout``: where pass 2 prompts (:data:`DENSE_LAYOUTS`): ``"tinysam"``
      (default; TinySAM's offsets around each sparse point, its exact masks) or
      ``"grid"`` (the regular ``points_per_side²`` grid); see the module docstring.

    The arguments come in TinySAM's order (``high_score_thresh`` fifth, before
    ``stability_score_thresh``; ``dense_layout`` is pocketsam's and comes last), and
    :meth:`hierarchical_generate` is TinySAM's name for :meth:`generate`, so code written
    for ``tinysam.SamHierarchicalMaskGenerator`` runs unchanged and gets TinySAM's masks.

    ``last_stats["prompts"]`` has ``sparse`` and ``dense`` counts;
    ``last_stats["covered_fraction"]`` the share of the image covered after pass 1
    (averaged over crops).

    The two passes are :meth:`_point_passes`; the covered map is filled by the
    kept-mask hook :meth:`_on_kept` during pass 1.

    Raises:
        ValueError: an unknown ``dense_layout`` (and the grid generator's argument checks).
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
        dense_layout: str = "tinysam",
    ) -> None:
        if dense_layout not in DENSE_LAYOUTS:
            # ValueError, as the other constructor arguments of the generators (segment_anything's API)
            raise InputError(f"unknown dense_layout {dense_layout!r}; use one of "
                             f"{', '.join(repr(x) for x in DENSE_LAYOUTS)}")
        super().__init__(
            model, points_per_side=points_per_side, points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset, box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh, crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor, point_grids=point_grids,
            min_mask_region_area=min_mask_region_area, output_mode=output_mode, speed=speed,
        )
        self.high_score_thresh = high_score_thresh
        self.dense_layout = dense_layout
        self._covered: torch.Tensor | None = None  # the crop's confident pixels, during pass 1

    def _dense_side(self, layer: int) -> int:
        """The dense grid's points a side in crop layer ``layer`` (from its point grid, so
        explicit ``point_grids`` work too)."""
        return int(round(np.sqrt(len(self.point_grids[layer]))))

    def _sparse_points(self, crop_size: tuple[int, int], layer: int) -> np.ndarray:
        grid = build_point_grid(max(1, self._dense_side(layer) // 4))
        return grid * np.array(crop_size, dtype=np.float64)[None, ::-1]

    def _point_passes(self, crop_size: tuple[int, int], layer: int, stats: Stats) -> Iterator[tuple[str, np.ndarray]]:
        """Pass 1: the sparse grid, marking confident pixels as covered (:meth:`_on_kept`);
        pass 2: the dense points (per ``dense_layout``) outside the covered area."""
        self._covered = torch.zeros(crop_size, dtype=torch.bool)
        sparse = self._sparse_points(crop_size, layer)
        yield "sparse", sparse
        covered, self._covered = self._covered, None
        if self.dense_layout == "tinysam":
            dense = tinysam_dense_points(sparse, crop_size, max(1, self._dense_side(layer)))
        else:
            dense = self._crop_points(crop_size, layer)
        stats.average("covered_fraction", float(covered.float().mean()))
        yield "dense", uncovered(dense, covered.numpy())

    def _on_kept(self, logits: torch.Tensor) -> None:
        """Pass 1: OR the kept masks' confident pixels (logit > ``high_score_thresh``) into
        the crop's covered map."""
        if self._covered is not None:
            self._covered |= (logits > self.high_score_thresh).any(dim=0)

    def hierarchical_generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """TinySAM's name for :meth:`generate` (``mask_generator.hierarchical_generate(image)``
        in TinySAM's demo); the same records, plus ``crop_box`` as the other generators'."""
        return self.generate(image)
