"""Resize-longest-side transform between original-image pixels and the model input frame."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F


class ResizeLongestSide:
    """Resize images so their longest side is ``target_length``; map coordinates and boxes
    accordingly. Same API and numerics as segment_anything's transform (PIL bilinear for
    uint8 numpy images)."""

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        scale = long_side_length * 1.0 / max(oldh, oldw)
        newh, neww = oldh * scale, oldw * scale
        # at least one pixel: a very elongated image (e.g. 1×300) would otherwise resize to nothing
        return max(1, int(newh + 0.5)), max(1, int(neww + 0.5))

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 H×W×3 → uint8 h×w×3 with max(h, w) = target_length."""
        h, w = self.get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        if (h, w) == image.shape[:2]:
            return np.ascontiguousarray(image)
        return np.array(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """(..., 2) x, y in original pixels → the resized frame (float copy)."""
        oldh, oldw = original_size
        newh, neww = self.get_preprocess_shape(oldh, oldw, self.target_length)
        coords = np.array(coords, dtype=float, copy=True)
        coords[..., 0] = coords[..., 0] * (neww / oldw)
        coords[..., 1] = coords[..., 1] * (newh / oldh)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        """(..., 4) xyxy boxes → (N, 4) in the resized frame."""
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """B×3×H×W float/uint8 tensor → resized float tensor (antialiased bilinear)."""
        h, w = self.get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image.float(), (h, w), mode="bilinear", align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        oldh, oldw = original_size
        newh, neww = self.get_preprocess_shape(oldh, oldw, self.target_length)
        coords = coords.to(torch.float).clone()
        coords[..., 0] = coords[..., 0] * (neww / oldw)
        coords[..., 1] = coords[..., 1] * (newh / oldh)
        return coords

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)
