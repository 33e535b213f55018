"""Distillation data: any folders of images, with SA-1B annotations where they exist, and
the teacher's cached embedding of each image.

Stage ``encoder`` needs no labels at all. Stage ``full`` draws its first prompts from
ground-truth masks where a folder has SA-1B ``*.json`` files, and from the teacher's own
masks for random points elsewhere (see :mod:`pocketsam.distill.step`).

Every image goes through the one transform the cache was keyed with: SAM's resize-longest-
side and bottom/right pad (:class:`~pocketsam.data.dataset.SegmentationDataset` with no
jitter), then, for every view after the first, mirrors and quarter turns of the image
content (:func:`~pocketsam.train.embeddings.view_content`; the padding stays bottom/right).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pocketsam.data.dataset import SegmentationDataset, collate, masks_to_boxes
from pocketsam.embedding_cache import TeacherCache
from pocketsam.errors import InputError
from pocketsam.train.embeddings import ImageOnly, ImageRecord, view_content


class DistillDataset(Dataset):
    """Item ``(index, seed)``: the image at the student's input size, its valid ``size``,
    up to ``max_instances`` ground-truth masks (none for unlabeled images), and the
    teacher's cached embedding ``teacher_embedding`` (C, g, g) of the same image, all in one
    of the ``views`` the cache holds, drawn uniformly per item and epoch. Batch with
    :func:`distill_collate`.

    ``masks_from``: only items from this index on read their masks (default: all). Stage
    ``encoder`` trains on embeddings alone and needs masks only for the validation images
    held out at the end; decoding them for every item costs ~5x the CPU of the image
    alone (10.3 vs 2.1 ms per 256² synthetic scene with 16 masks)."""

    def __init__(
        self,
        images: Sequence[ImageRecord],
        cache: TeacherCache,
        img_size: int,
        max_instances: int,
        views: int = 1,
        seed: int = 0,
        masks_from: int = 0,
    ) -> None:
        if views > cache.transform.views:
            raise InputError(f"training on {views} views of each image needs a cache built with --views {views}, "
                             f"this one holds {cache.transform.views}", f"rebuild the cache with --views {views}")
        self.images = list(images)
        self.cache = cache
        self.views = views
        self.seed = seed
        samples = [im.sample if i >= masks_from else ImageOnly(im.path, im.sample.image_id) for i, im in enumerate(self.images)]
        self.frames = SegmentationDataset(
            samples, img_size=img_size, max_instances=max_instances,
            hflip_prob=0.0, scale_range=(1.0, 1.0), seed=seed,
        )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labeled_fraction(self) -> float:
        return sum(im.labeled for im in self.images) / max(1, len(self.images))

    def __getitem__(self, key) -> dict[str, Any]:
        index, seed = key
        self.frames.set_epoch(seed)
        item = self.frames[index]
        # uniform over the views; counted down so that with 2 views the mirrored half is the draws < 0.5, as before views
        view = self.views - 1 - int(np.random.default_rng([self.seed, seed, index]).random() * self.views)
        if view:
            item["image"], size = view_content(item["image"], item["size"], view)
            item["masks"], _ = view_content(item["masks"], item["size"], view)
            item["size"] = torch.tensor(size, dtype=item["size"].dtype)
            if view & 4:  # a quarter turn: the source image is seen transposed too
                item["original_size"] = item["original_size"].flip(0)
            item["boxes"] = masks_to_boxes(item["masks"])
        emb = self.cache.get(self.images[index].sha256, view)
        item["teacher_embedding"] = torch.from_numpy(np.array(emb, dtype=np.float32))
        return item


def distill_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch = collate(items)
    batch["teacher_embedding"] = torch.stack([it["teacher_embedding"] for it in items])
    return batch
