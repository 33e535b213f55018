"""A frozen model's embeddings of a folder of images, computed once and cached.

Distillation caches the teacher's (:mod:`pocketsam.distill`); proposal-head training caches
the frozen model's own (:mod:`pocketsam.train.proposals`). Every image goes through the one
transform the cache is keyed with: SAM's resize-longest-side and bottom/right pad
(:class:`~pocketsam.data.dataset.SegmentationDataset` with no jitter), then, for every view
after the first, mirrors and quarter turns of the image content (:func:`view_content`; the
padding stays bottom/right).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pocketsam.checkpoints import weights_sha256
from pocketsam.data.dataset import SegmentationDataset
from pocketsam.data.sa1b import read_sa1b_json
from pocketsam.data.sample import Sample
from pocketsam.embedding_cache import CacheTransform, TeacherCache, build_cache
from pocketsam.errors import InputError, PocketSamError
from pocketsam.io import IMAGE_SUFFIXES, list_images, load_image, sha256_file
from pocketsam.models.sam import Sam
from pocketsam.runtime import optimize
from pocketsam.runtime.load import build_sam
from pocketsam.train.config import TrainConfig
from pocketsam.train.step import encode_images


@dataclass
class ImageOnly:
    """An unlabeled image, with the part of :class:`~pocketsam.data.sample.Sample`'s
    interface the dataset reads."""

    image_path: Path
    image_id: int
    instances: tuple = ()

    def load_image(self) -> np.ndarray:
        return load_image(self.image_path)


@dataclass
class ImageRecord:
    """One image of a data folder: its sample (with masks where SA-1B annotations exist)
    and the SHA-256 of its bytes (the embedding cache's key)."""

    sample: Sample | ImageOnly
    sha256: str

    @property
    def path(self) -> Path:
        return self.sample.image_path

    @property
    def labeled(self) -> bool:
        return isinstance(self.sample, Sample)


def collect_images(folders: Sequence[str | Path]) -> list[ImageRecord]:
    """Every image of ``folders``: SA-1B samples (with masks) for images that have an
    annotation file, plain images otherwise; each with the SHA-256 of its bytes."""

    out: list[ImageRecord] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise InputError(f"data folder '{root}' does not exist or is not a folder", "check the path")
        samples = [read_sa1b_json(j) for j in sorted(root.glob("*.json"))]
        annotated = {s.image_path.resolve() for s in samples}
        plain = [p for p in list_images(root) if p.resolve() not in annotated]
        for s in samples:
            out.append(ImageRecord(s, sha256_file(s.image_path)))
        for p in plain:
            out.append(ImageRecord(ImageOnly(p, image_id=-1 - len(out)), sha256_file(p)))
    if not out:
        raise InputError(
            f"no images in {', '.join(str(f) for f in folders)}",
            f"give folders of images ({', '.join(sorted(IMAGE_SUFFIXES))}), with SA-1B *.json files where you have masks",
        )
    return out


def flip_content(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Mirror the valid ``size = (h, w)`` top-left region of (..., S, S) left–right,
    leaving the bottom/right padding where it is. Returns a new tensor."""
    h, w = int(size[0]), int(size[1])
    out = x.clone()
    out[..., :h, :w] = x[..., :h, :w].flip(-1)
    return out


def view_content(x: torch.Tensor, size: Sequence[int], view: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """View ``view`` (0–7) of the valid ``size = (h, w)`` top-left region of (..., S, S):
    bit 0 mirrors it left–right (:func:`flip_content`), bit 1 up–down, and bit 2 then
    transposes the whole frame (with the mirrors, the quarter turns), which keeps the
    content top-left and the padding bottom/right but makes the valid size (w, h).
    Views 0–1, 0–3 and 0–7 are the 2, 4 and 8 views a cache holds (``--views``).
    Returns a new tensor and the view's valid size."""
    h, w = int(size[0]), int(size[1])
    out = flip_content(x, (h, w)) if view & 1 else x.clone()
    if view & 2:
        out[..., :h, :w] = out[..., :h, :w].flip(-2)
    if view & 4:
        return out.transpose(-1, -2).contiguous(), (w, h)
    return out, (h, w)


def frame_images(paths: Sequence[Path], img_size: int) -> SegmentationDataset:
    """The images in a model's input frame (no masks), exactly as training sees them."""
    return SegmentationDataset(
        [ImageOnly(Path(p), i) for i, p in enumerate(paths)], img_size=img_size, hflip_prob=0.0, scale_range=(1.0, 1.0)
    )


def load_frozen(checkpoint: str, device: torch.device | str = "cpu", role: str = "model") -> Sam:
    """``checkpoint`` built for inference with gradients off; a load error names ``role``
    (``"teacher"``, ``"model"``)."""
    try:
        model = build_sam(checkpoint=checkpoint, device=str(device))
    except PocketSamError as exc:
        raise PocketSamError(f"cannot use {role} '{checkpoint}': {exc.what}", exc.hint) from exc
    model.eval().requires_grad_(False)
    return model


def open_cache(root: str | Path, teacher: Sam, views: int) -> TeacherCache:
    g = teacher.prompt_encoder.image_embedding_size
    shape = (teacher.mask_decoder.transformer_dim, *g)
    return TeacherCache(root, weights_sha256(teacher), CacheTransform(teacher.img_size, views), shape)


def fill_cache(cache: TeacherCache, teacher: Sam, images: Sequence[ImageRecord], batch_size: int = 8, progress: bool = True) -> int:
    """Compute the teacher embeddings the cache lacks (with the fast inference path)."""

    fast = optimize(teacher, "default")

    @torch.no_grad()
    def encode(paths) -> torch.Tensor:
        frames = frame_images(paths, teacher.img_size)
        items = [frames[i] for i in range(len(paths))]  # read once, for every view
        per_view = []
        for view in range(cache.rows_per_image):
            seen = [view_content(it["image"], it["size"], view) for it in items]
            images = torch.stack([image for image, _ in seen])
            sizes = torch.tensor([size for _, size in seen])
            per_view.append(encode_images(fast, images.to(teacher.device), sizes.to(teacher.device)))
        return torch.stack(per_view, 1)

    return build_cache(cache, [(im.path, im.sha256) for im in images], encode, batch_size=batch_size, progress=progress)


def cached_embeddings(
    model: Sam, images: Sequence[ImageRecord], root: str | Path, views: int, progress: bool = True
) -> TeacherCache:
    """``model``'s embeddings of ``images`` in the cache under ``root``: rank 0 computes the
    missing ones, other ranks wait for it. Used by distillation (the teacher) and by
    proposal-head training (the frozen model itself)."""
    cache = open_cache(root, model, views)
    if int(os.environ.get("RANK", "0")) == 0:
        fill_cache(cache, model, images, progress=progress)
        return cache
    return wait_for_cache(cache, images)


def default_device(train: TrainConfig) -> str:
    """The run's device: ``train.device``, else CUDA where there is one, else the CPU."""
    return train.device or ("cuda" if torch.cuda.is_available() else "cpu")


def wait_for_cache(cache: TeacherCache, images: Sequence[ImageRecord], poll_s: float = 2.0) -> TeacherCache:
    """Ranks other than 0 wait until rank 0 has filled the cache, then reopen it."""
    while True:
        fresh = TeacherCache(cache.root, cache.teacher_sha256, cache.transform, cache.embed_shape)
        if not fresh.missing(im.sha256 for im in images):
            return fresh
        time.sleep(poll_s)
