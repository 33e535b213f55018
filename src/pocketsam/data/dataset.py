"""Training-time dataset: samples from any reader, resized to the model's input frame.

Each item is prepared like :class:`pocketsam.SamPredictor` prepares an image — longest
side resized to ``img_size`` (with the same :class:`~pocketsam.preprocess.ResizeLongestSide`),
padded at the bottom/right to ``img_size × img_size`` — with optional augmentation applied
identically to image and masks:

* horizontal flip (probability ``hflip_prob``);
* scale jitter: the longest side becomes ``img_size × s`` with ``s`` uniform in
  ``scale_range``; when that exceeds ``img_size`` a random ``img_size`` window is cropped.

Up to ``max_instances`` non-crowd instances are sampled per image. Pixel normalisation
(SAM's mean/std) is left to the model: images are float tensors with values 0..255.

Items are dicts::

    image          float32 3×S×S, 0..255, zero padding
    masks          bool K×S×S
    boxes          float32 K×4, tight boxes x0, y0, x1, y1 in the S×S frame, inclusive pixel
                   indices (SAM's ``batched_mask_to_box`` convention)
    size           int64 (h, w): the image content's extent inside S×S
    original_size  int64 (H, W)
    instance_ids   int64 K: annotation ids
    image_id, index

and :func:`collate` batches them, padding the instance dimension (``valid`` says which
rows are real) — the batch layout :class:`pocketsam.train.step.SamTrainStep` takes.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from pocketsam.data.sample import Instance, Sample
from pocketsam.errors import InputError
from pocketsam.masks import batched_mask_to_box
from pocketsam.preprocess import ResizeLongestSide


class SegmentationDataset(Dataset):
    """A torch dataset of image + instance masks for training promptable segmenters.

    Args:
        samples: any sequence of :class:`~pocketsam.data.sample.Sample` (an
            :class:`~pocketsam.data.sa1b.SA1BReader`, a
            :class:`~pocketsam.data.coco.CocoReader`, a list...).
        img_size: the model's input size (``sam.image_encoder.img_size``).
        max_instances: K, the most instances returned per image (sampled at random).
        hflip_prob: probability of a horizontal flip.
        scale_range: scale jitter range; ``(1, 1)`` disables it.
        min_mask_pixels: instances smaller than this after the transform are dropped.
        cache_masks: keep decoded masks (bit-packed) in memory; each DataLoader worker
            holds its own cache.
        seed: with a seed, the augmentation of item ``i`` depends only on
            ``(seed, epoch, i)`` (see :meth:`set_epoch`); without, it comes from torch's
            RNG, which DataLoader seeds differently in every worker.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        img_size: int = 1024,
        max_instances: int = 16,
        hflip_prob: float = 0.5,
        scale_range: tuple[float, float] = (0.75, 1.25),
        min_mask_pixels: int = 4,
        cache_masks: bool = False,
        seed: int | None = None,
    ) -> None:
        if img_size < 8:
            raise InputError(f"img_size must be >= 8, got {img_size}")
        if max_instances < 1:
            raise InputError(f"max_instances must be >= 1, got {max_instances}")
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise InputError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.samples = samples
        self.img_size = int(img_size)
        self.max_instances = int(max_instances)
        self.hflip_prob = float(hflip_prob)
        self.scale_range = (float(lo), float(hi))
        self.min_mask_pixels = int(min_mask_pixels)
        self.cache_masks = cache_masks
        self.seed = seed
        self.epoch = 0
        self._cache: dict[tuple[int, int], tuple[np.ndarray, tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream of a seeded dataset (call once per epoch)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ helpers
    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is not None:
            return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, self.epoch, int(index)])
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def _mask(self, index: int, inst: Instance) -> np.ndarray:
        if not self.cache_masks:
            return inst.mask
        key = (index, inst.id)
        hit = self._cache.get(key)
        if hit is None:
            m = inst.mask
            hit = (np.packbits(m, axis=None), m.shape)
            self._cache[key] = hit
        packed, shape = hit
        return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)

    # ------------------------------------------------------------------ item
    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        rng = self._rng(index)
        image = sample.load_image()
        H, W = image.shape[:2]
        candidates = [i for i in sample.instances if not i.iscrowd and i.area > 0]
        if len(candidates) > self.max_instances:
            pick = np.sort(rng.choice(len(candidates), self.max_instances, replace=False))
            candidates = [candidates[int(j)] for j in pick]
        masks = np.stack([self._mask(index, i) for i in candidates]) if candidates else np.zeros((0, H, W), bool)

        if rng.random() < self.hflip_prob:
            image = image[:, ::-1]
            masks = masks[:, :, ::-1]

        S = self.img_size
        scale = rng.uniform(*self.scale_range) if self.scale_range != (1.0, 1.0) else 1.0
        target = max(1, int(round(S * scale)))
        resized = ResizeLongestSide(target).apply_image(np.ascontiguousarray(image))
        h, w = resized.shape[:2]
        mask_t = _resize_masks(masks, (h, w))

        # random crop when jitter made the image larger than the input frame
        y0 = int(rng.integers(0, h - S + 1)) if h > S else 0
        x0 = int(rng.integers(0, w - S + 1)) if w > S else 0
        vh, vw = min(h, S), min(w, S)
        img_t = torch.zeros(3, S, S, dtype=torch.float32)
        img_t[:, :vh, :vw] = torch.from_numpy(np.array(resized[y0 : y0 + vh, x0 : x0 + vw])).permute(2, 0, 1).float()
        out_masks = torch.zeros(len(mask_t), S, S, dtype=torch.bool)
        out_masks[:, :vh, :vw] = mask_t[:, y0 : y0 + vh, x0 : x0 + vw].bool()

        keep = out_masks.flatten(1).sum(1) >= self.min_mask_pixels
        out_masks = out_masks[keep]
        ids = [c.id for c, k in zip(candidates, keep.tolist()) if k]
        return {
            "image": img_t,
            "masks": out_masks,
            "boxes": masks_to_boxes(out_masks),
            "size": torch.tensor([vh, vw], dtype=torch.int64),
            "original_size": torch.tensor([H, W], dtype=torch.int64),
            "instance_ids": torch.tensor(ids, dtype=torch.int64),
            "image_id": sample.image_id,
            "index": index,
        }


def _resize_masks(masks: np.ndarray, size: tuple[int, int], chunk: int = 8) -> torch.Tensor:
    """Resize K×H×W bool masks to ``size`` (area-faithful: antialiased bilinear, then > 0.5)."""
    k = len(masks)
    out = torch.zeros(k, *size, dtype=torch.uint8)
    for s in range(0, k, chunk):
        m = torch.from_numpy(np.ascontiguousarray(masks[s : s + chunk])).float()[:, None]
        if m.shape[-2:] == size:
            r = m
        else:
            r = F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[s : s + chunk] = (r[:, 0] > 0.5).to(torch.uint8)
    return out


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes ``x0, y0, x1, y1`` (inclusive pixel indices, as SAM's
    ``batched_mask_to_box``) of K×H×W masks; zeros for empty ones."""
    return batched_mask_to_box(masks.bool()).float()


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`SegmentationDataset`, padding instances to the largest K.

    Returns ``image`` B×3×S×S, ``masks`` B×K×S×S bool, ``boxes`` B×K×4, ``valid`` B×K
    bool (real instances), ``size``/``original_size`` B×2, ``instance_ids`` B×K (-1 for
    padding), ``image_id`` and ``index`` lists.
    """
    B = len(batch)
    S = batch[0]["image"].shape[-1]
    K = max((len(b["masks"]) for b in batch), default=0)
    masks = torch.zeros(B, K, S, S, dtype=torch.bool)
    ids = torch.full((B, K), -1, dtype=torch.int64)
    boxes = torch.zeros(B, K, 4, dtype=torch.float32)
    valid = torch.zeros(B, K, dtype=torch.bool)
    for i, b in enumerate(batch):
        k = len(b["masks"])
        masks[i, :k] = b["masks"]
        boxes[i, :k] = b["boxes"]
        ids[i, :k] = b["instance_ids"]
        valid[i, :k] = True
    return {
        "image": torch.stack([b["image"] for b in batch]),
        "masks": masks,
        "boxes": boxes,
        "valid": valid,
        "instance_ids": ids,
        "size": torch.stack([b["size"] for b in batch]),
        "original_size": torch.stack([b["original_size"] for b in batch]),
        "image_id": [b["image_id"] for b in batch],
        "index": [b["index"] for b in batch],
    }
