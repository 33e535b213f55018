"""The one door from image pixels to a model's square input frame and back.

:class:`Preprocess` resizes (longest side), normalises and pads an image, maps points and
boxes into the input frame and back. The predictor, training, distillation, int8
calibration, the benchmarks and the web app all use it; :class:`ResizeLongestSide` is
segment_anything's transform (same API and numerics), its resize part. Low-res mask logits
go back to image size through :func:`pocketsam.masks.upsample_logits`."""

from __future__ import annotations

from typing import Sequence

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


PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def normalize_pad(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, img_size: int) -> torch.Tensor:
    """Normalise pixels and pad bottom/right with zeros (after normalisation) to
    ``img_size``²: (B, 3, h, w) float 0–255 → (B, 3, S, S). ``mean``/``std``: (3, 1, 1)."""
    x = (x - mean) / std
    h, w = x.shape[-2:]
    return F.pad(x, (0, img_size - w, 0, img_size - h))


def normalize_batch(x: torch.Tensor, sizes: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """:func:`normalize_pad` for a batch already padded: (B, 3, S, S) float 0–255 zero-padded
    bottom/right with valid sizes (B, 2) h, w → normalised, the padding 0 again."""
    s = x.shape[-1]
    ar = torch.arange(s, device=x.device)
    valid = (ar[None, :, None] < sizes[:, 0, None, None]) & (ar[None, None, :] < sizes[:, 1, None, None])
    return ((x - mean) / std) * valid[:, None]


class Preprocess:
    """Image pixels ↔ a model's input frame, for one input size.

    Args:
        img_size: the model's square input side ``S``.
        pixel_mean, pixel_std: normalisation (SAM's unless given).
    """

    def __init__(self, img_size: int, pixel_mean: Sequence[float] = PIXEL_MEAN,
                 pixel_std: Sequence[float] = PIXEL_STD) -> None:
        self.img_size = int(img_size)
        self.transform = ResizeLongestSide(self.img_size)
        self.mean = torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1)

    @classmethod
    def for_model(cls, sam) -> "Preprocess":
        """The preprocessing of a :class:`~pocketsam.models.sam.Sam` (its input size and
        normalisation)."""
        return cls(sam.img_size, sam.pixel_mean.flatten().tolist(), sam.pixel_std.flatten().tolist())

    def input_size(self, original_size: Sequence[int]) -> tuple[int, int]:
        """(h, w) of an image of ``original_size`` (H, W) after the resize."""
        return ResizeLongestSide.get_preprocess_shape(int(original_size[0]), int(original_size[1]), self.img_size)

    def resize(self, image: np.ndarray) -> np.ndarray:
        """uint8 H×W×3 → uint8 h×w×3, longest side ``S`` (writable, contiguous)."""
        out = self.transform.apply_image(image)
        return out if out.flags.writeable else out.copy()  # torch cannot wrap read-only memory

    def resized_tensor(self, image: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
        """uint8 H×W×3 → 1×3×h×w uint8 tensor (resized, not normalised): what
        ``SamPredictor.set_torch_image`` takes."""
        return torch.as_tensor(self.resize(image), device=device).permute(2, 0, 1).contiguous()[None]

    def normalize_pad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) float 0–255 → (B, 3, S, S) normalised, zero-padded bottom/right."""
        return normalize_pad(x.float(), self.mean.to(x.device), self.std.to(x.device), self.img_size)

    def image(self, image: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
        """uint8 H×W×3 → the encoder's input, 1×3×S×S float32."""
        return self.normalize_pad(self.resized_tensor(image, device).float())

    def coords(self, coords: np.ndarray, original_size: Sequence[int]) -> np.ndarray:
        """(..., 2) x, y in image pixels → the input frame."""
        return self.transform.apply_coords(coords, tuple(original_size))

    def boxes(self, boxes: np.ndarray, original_size: Sequence[int]) -> np.ndarray:
        """(..., 4) xyxy in image pixels → (N, 4) in the input frame."""
        return self.transform.apply_boxes(boxes, tuple(original_size))

    def boxes_to_image(self, boxes: torch.Tensor, original_size: Sequence[int]) -> torch.Tensor:
        """(N, 4) xyxy in the input frame → image pixels (the inverse of :meth:`boxes`;
        the padding is bottom/right, so only the resize is undone)."""
        h, w = int(original_size[0]), int(original_size[1])
        ih, iw = self.input_size((h, w))
        scale = torch.tensor([w / iw, h / ih, w / iw, h / ih], dtype=boxes.dtype, device=boxes.device)
        return boxes * scale
