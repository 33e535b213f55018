"""Putting distillation together: the teacher, its cache, the student and the engine."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from pocketsam.checkpoints import weights_sha256
from pocketsam.embedding_cache import CacheTransform, TeacherCache, build_cache
from pocketsam.distill.data import (
    DistillDataset,
    DistillImage,
    collect_images,
    distill_collate,
    flip_content,
    frame_images,
)
from pocketsam.distill.step import EncoderDistillStep, FullDistillStep, LossWeights
from pocketsam.errors import PocketSamError
from pocketsam.models.sam import Sam
from pocketsam.runtime import optimize
from pocketsam.runtime.load import build_sam
from pocketsam.train.engine import TrainConfig, Trainer
from pocketsam.train.step import encode_images

STAGES = ("encoder", "full")


@dataclass
class DistillConfig:
    """What distillation adds to :class:`~pocketsam.train.engine.TrainConfig` (which holds
    the student, the data, the optimisation and the run folder).

    Attributes:
        teacher: any checkpoint :func:`pocketsam.build_sam` loads.
        stage: ``encoder`` (MobileSAM, decoupled) or ``full`` (TinySAM, full-stage).
        cache: teacher-embedding cache folder (default ``OUT/teacher_cache``).
        flip: cache flipped images too and train with random horizontal flips.
        weights: full-stage loss weights.
        hard_prompts, hard_mask_weighting, gamma: full-stage strategies (see
            :class:`~pocketsam.distill.step.FullDistillStep`).
    """

    teacher: str
    stage: str = "encoder"
    cache: str | None = None
    flip: bool = False
    weights: LossWeights = field(default_factory=LossWeights)
    hard_prompts: bool = True
    hard_mask_weighting: bool = True
    gamma: float = 1.0

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise PocketSamError(f"unknown distillation stage '{self.stage}'", f"use one of {', '.join(STAGES)}")
        for name, value in (*asdict(self.weights).items(), ("gamma", self.gamma)):
            if not (value >= 0 and value != float("inf")):
                raise PocketSamError(f"the {name} weight must be a finite number >= 0, got {value}")

    def cache_root(self, out: str | Path) -> Path:
        return Path(self.cache) if self.cache else Path(out) / "teacher_cache"

    def settings(self) -> dict:
        """What changes the result (saved with the run, compared on resume)."""
        s = asdict(self)
        for where in ("cache", "teacher"):  # the teacher is identified by its weights' hash instead
            s.pop(where)
        return s


def load_teacher(checkpoint: str, device: torch.device | str = "cpu") -> Sam:
    try:
        teacher = build_sam(checkpoint=checkpoint, device=str(device))
    except PocketSamError as exc:
        raise PocketSamError(f"cannot use teacher '{checkpoint}': {exc.what}", exc.hint) from exc
    teacher.eval().requires_grad_(False)
    return teacher


def open_cache(root: str | Path, teacher: Sam, flip: bool) -> TeacherCache:
    g = teacher.prompt_encoder.image_embedding_size
    shape = (teacher.mask_decoder.transformer_dim, *g)
    return TeacherCache(root, weights_sha256(teacher), CacheTransform(teacher.img_size, flip), shape)


def fill_cache(cache: TeacherCache, teacher: Sam, images: Sequence[DistillImage], batch_size: int = 8, progress: bool = True) -> int:
    """Compute the teacher embeddings the cache lacks (with the fast inference path)."""

    fast = optimize(teacher, "default")

    @torch.no_grad()
    def encode(paths, flipped: bool) -> torch.Tensor:
        frames = frame_images(paths, teacher.img_size)
        items = [frames[i] for i in range(len(paths))]
        images = torch.stack([flip_content(it["image"], it["size"]) if flipped else it["image"] for it in items])
        sizes = torch.stack([it["size"] for it in items])
        return encode_images(fast, images.to(teacher.device), sizes.to(teacher.device))

    return build_cache(cache, [(im.path, im.sha256) for im in images], encode, batch_size=batch_size, progress=progress)


def cached_embeddings(
    model: Sam, images: Sequence[DistillImage], root: str | Path, flip: bool, progress: bool = True
) -> TeacherCache:
    """``model``'s embeddings of ``images`` in the cache under ``root``: rank 0 computes the
    missing ones, other ranks wait for it. Used by distillation (the teacher) and by
    proposal-head training (the frozen model itself)."""
    cache = open_cache(root, model, flip)
    if int(os.environ.get("RANK", "0")) == 0:
        fill_cache(cache, model, images, progress=progress)
        return cache
    return wait_for_cache(cache, images)


def default_device(train: TrainConfig) -> str:
    return train.device or ("cuda" if torch.cuda.is_available() else "cpu")


def wait_for_cache(cache: TeacherCache, images: Sequence[DistillImage], poll_s: float = 2.0) -> TeacherCache:
    """Ranks other than 0 wait until rank 0 has filled the cache, then reopen it."""
    while True:
        fresh = TeacherCache(cache.root, cache.teacher_sha256, cache.transform, cache.embed_shape)
        if not fresh.missing(im.sha256 for im in images):
            return fresh
        time.sleep(poll_s)


def prepare_student(student: Sam, teacher: Sam, stage: str, own_decoder: bool) -> None:
    """Give the student the teacher's prompt encoder and mask decoder (MobileSAM reuses
    them as they are; full-stage distillation starts from them), unless it brings its own
    (``own_decoder``: a student checkpoint in stage ``full``)."""
    if own_decoder and stage == "full":
        return
    for part in ("prompt_encoder", "mask_decoder"):
        src, dst = getattr(teacher, part).state_dict(), getattr(student, part)
        mine = dst.state_dict()
        bad = [k for k in mine if k not in src or src[k].shape != mine[k].shape]
        if bad:
            raise PocketSamError(
                f"the student's {part} does not match the teacher's ({len(bad)} tensors differ, e.g. {bad[0]})",
                "choose a student with the teacher's prompt/decoder dimensions (all SAM-family presets share them)",
            )
        dst.load_state_dict(src)
    student.mask_decoder.multimask_only = teacher.mask_decoder.multimask_only


def distill(train: TrainConfig, cfg: DistillConfig, progress: bool = True) -> dict:
    """Run one distillation: fill the cache if needed, then train the student."""
    cfg.validate()
    train.validate()
    rank = int(os.environ.get("RANK", "0"))
    teacher = load_teacher(cfg.teacher, default_device(train))
    images = collect_images(train.data)
    cache = cached_embeddings(teacher, images, cfg.cache_root(train.out), cfg.flip, progress)
    if cfg.stage == "encoder":
        train.freeze = sorted(set(train.freeze) | {"prompt_encoder", "mask_decoder"})
    masks_from = 0
    if cfg.stage == "encoder":  # masks only for validation: the engine holds out the last val_images, if it can spare them
        held = train.val_images if len(images) > 2 * train.val_images else 0
        masks_from = len(images) - held
    dataset = DistillDataset(images, cache, train.input_size(), train.masks_per_image, flip=cfg.flip, seed=train.seed,
                             masks_from=masks_from)
    if cfg.stage == "full" and dataset.labeled_fraction < 1 and rank == 0:
        print(
            f"{100 * (1 - dataset.labeled_fraction):.0f}% of the images have no masks: their first prompts are "
            f"{train.masks_per_image} random points each, and the teacher's masks are the targets"
        )

    def make_step(student: Sam):
        prepare_student(student, teacher, cfg.stage, own_decoder=train.init is not None)
        t = teacher.to(student.device)
        if cfg.stage == "encoder":
            return EncoderDistillStep(student, t)
        return FullDistillStep(
            student, t, cfg.weights, prompts_per_image=train.masks_per_image, rounds=train.rounds,
            box_prob=train.box_prob, hard_prompts=cfg.hard_prompts, hard_mask_weighting=cfg.hard_mask_weighting,
            gamma=cfg.gamma,
        )

    settings = {**cfg.settings(), "teacher_sha256": cache.teacher_sha256}
    return Trainer(train, dataset, distill_collate, step_factory=make_step, settings=settings).fit()
