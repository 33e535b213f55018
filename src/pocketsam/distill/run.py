"""Putting distillation together: the teacher, its cache, the student and the engine."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pocketsam.distill.data import DistillDataset, distill_collate
from pocketsam.distill.losses import DISTANCES
from pocketsam.distill.step import EncoderDistillStep, FullDistillStep, LossWeights
from pocketsam.embedding_cache import VIEWS
from pocketsam.errors import PocketSamError
from pocketsam.models.sam import Sam
from pocketsam.train.embeddings import cached_embeddings, collect_images, default_device, load_frozen
from pocketsam.train.engine import TrainConfig, Trainer

STAGES = ("encoder", "full")


@dataclass
class DistillConfig:
    """What distillation adds to :class:`~pocketsam.train.engine.TrainConfig` (which holds
    the student, the data, the optimisation and the run folder).

    Attributes:
        teacher: any checkpoint :func:`pocketsam.build_sam` loads.
        stage: ``encoder`` (MobileSAM, decoupled) or ``full`` (TinySAM, full-stage).
        cache: teacher-embedding cache folder (default ``OUT/teacher_cache``).
        views: how many views of each image the teacher embeds and training draws from
            (1, 2, 4 or 8: the image, its mirrors, their quarter turns; see
            :func:`~pocketsam.train.embeddings.view_content`).
        weights: full-stage loss weights.
        hard_prompts, hard_mask_weighting, gamma: full-stage strategies (see
            :class:`~pocketsam.distill.step.FullDistillStep`).
        detail: extra weight of the embedding error's fine part, both stages (see
            :func:`~pocketsam.distill.losses.embedding_loss`).
        distance: ``l2`` or ``l1``, how the embedding and decoder-token errors are measured.
        train_decoder: stage ``full`` also trains the student's prompt encoder and mask
            decoder (TinySAM's paper does); by default they stay the teacher's (or the
            student checkpoint's own) and only the encoder learns, from all three losses:
            a trained decoder lost agreement with the teacher here (docs/training.md,
            "The decoder in stage full"). Stage ``encoder`` never trains them.
    """

    teacher: str
    stage: str = "encoder"
    cache: str | None = None
    views: int = 1
    weights: LossWeights = field(default_factory=LossWeights)
    hard_prompts: bool = True
    hard_mask_weighting: bool = True
    gamma: float = 1.0
    detail: float = 0.0
    distance: str = "l2"
    train_decoder: bool = False

    def validate(self) -> None:
        if self.views not in VIEWS:
            raise PocketSamError(f"--views must be one of {', '.join(map(str, VIEWS))}, got {self.views}")
        if self.distance not in DISTANCES:
            raise PocketSamError(f"unknown distance '{self.distance}'", f"use one of {', '.join(DISTANCES)}")
        if self.stage not in STAGES:
            raise PocketSamError(f"unknown distillation stage '{self.stage}'", f"use one of {', '.join(STAGES)}")
        if self.train_decoder and self.stage != "full":
            raise PocketSamError("stage encoder keeps the teacher's prompt encoder and decoder",
                                 "train the decoder in stage full (--stage full --train-decoder)")
        for name, value in (*asdict(self.weights).items(), ("gamma", self.gamma), ("detail", self.detail)):
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


def upgrade_settings(saved: dict) -> dict:
    """The distillation settings a run saved by an older pocketsam, in today's terms:
    ``flip`` was ``views`` 2 (on) or 1 (off); ``detail`` and ``distance`` did not exist
    (0, none; ``l2``); nor did ``train_decoder``: stage ``full`` trained the decoder."""
    saved = dict(saved)
    if "flip" in saved:
        saved["views"] = 2 if saved.pop("flip") else 1
    saved.setdefault("detail", 0.0)
    saved.setdefault("distance", "l2")
    saved.setdefault("train_decoder", saved.get("stage") == "full")
    return saved


def load_teacher(checkpoint: str, device: torch.device | str = "cpu") -> Sam:
    """The teacher, frozen (:func:`~pocketsam.train.embeddings.load_frozen`)."""
    return load_frozen(checkpoint, device, "teacher")


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
    cache = cached_embeddings(teacher, images, cfg.cache_root(train.out), cfg.views, progress)
    if not cfg.train_decoder:
        train.freeze = sorted(set(train.freeze) | {"prompt_encoder", "mask_decoder"})
    masks_from = 0
    if cfg.stage == "encoder":  # masks only for validation: the engine holds out the last val_images, if it can spare them
        held = train.val_images if len(images) > 2 * train.val_images else 0
        masks_from = len(images) - held
    dataset = DistillDataset(images, cache, train.input_size(), train.masks_per_image, views=cfg.views, seed=train.seed,
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
            return EncoderDistillStep(student, t, cfg.detail, cfg.distance)
        return FullDistillStep(
            student, t, cfg.weights, prompts_per_image=train.masks_per_image, rounds=train.rounds,
            box_prob=train.box_prob, hard_prompts=cfg.hard_prompts, hard_mask_weighting=cfg.hard_mask_weighting,
            gamma=cfg.gamma, detail=cfg.detail, distance=cfg.distance,
        )

    settings = {**cfg.settings(), "teacher_sha256": cache.teacher_sha256}
    return Trainer(train, dataset, distill_collate, step_factory=make_step, settings=settings,
                   upgrade_settings=upgrade_settings).fit()
