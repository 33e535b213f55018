"""Training data: readers → :class:`~pocketsam.data.dataset.SegmentationDataset`, indexed by
``(index, seed)`` so that every sample's augmentation is reproducible (exact resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from torch.utils.data import Dataset

from pocketsam.data import CocoReader, SA1BReader
from pocketsam.data.dataset import SegmentationDataset, collate


class SeededItems(Dataset):
    """Wrap a seeded :class:`SegmentationDataset`: item ``(i, s)`` is sample ``i`` with the
    augmentation stream ``s`` (the engine's sampler gives every draw its own ``s``)."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        self.dataset.set_epoch(seed)
        return self.dataset[index]


class _Concat(Sequence):
    def __init__(self, parts: list[Sequence]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, i: int):
        for p in self.parts:
            if i < len(p):
                return p[i]
            i -= len(p)
        raise IndexError(i)


def build_training_set(
    sa1b_dirs: list[str],
    coco_json: str | None,
    coco_images: str | None,
    img_size: int,
    masks_per_image: int,
    augment: bool = True,
    seed: int = 0,
):
    """Combine SA-1B folders and a COCO file into one seeded training dataset + collate fn."""

    parts: list[Sequence] = [SA1BReader(Path(d)) for d in sa1b_dirs]
    if coco_json:
        parts.append(CocoReader(coco_json, coco_images))
    samples = parts[0] if len(parts) == 1 else _Concat(parts)
    dataset = SegmentationDataset(
        samples,
        img_size=img_size,
        max_instances=masks_per_image,
        hflip_prob=0.5 if augment else 0.0,
        scale_range=(0.75, 1.25) if augment else (1.0, 1.0),
        seed=seed,
    )
    return SeededItems(dataset), collate
