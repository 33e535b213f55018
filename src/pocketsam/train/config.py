"""The training engine's settings, free of torch so that the command line can read their
defaults without importing it (``pocketsam --help`` stays instant)."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from pocketsam.errors import PocketSamError

PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    arch: str = "pocketsam_tiny"
    img_size: int | None = None  # override the architecture's input size
    init: str | None = None  # start from this checkpoint (its architecture wins over arch)
    steps: int = 2000
    batch_size: int = 4  # images per rank per micro-step
    masks_per_image: int = 16
    accum_steps: int = 1
    lr: float = 4e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    adam_beta2: float = 0.999  # AdamW's second-moment decay; lower forgets early, large gradients sooner
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA)
    freeze: list[str] = field(default_factory=list)
    rounds: int = 3
    box_prob: float = 0.5
    mask_feedback_prob: float = 0.5
    focal_weight: float = 20.0  # SAM's 20:1 focal:dice
    dice_weight: float = 1.0
    save_every: int = 100
    log_every: int = 10
    eval_every: int = 0  # 0: validate only at the end
    val_images: int = 16  # held out from the end of the data
    num_workers: int = 2
    seed: int = 0
    tensorboard: bool = False
    device: str | None = None
    resume: bool = False
    overwrite: bool = False  # start again in a folder that already holds a run
    allow_config_change: bool = False  # resume even though settings differ from the saved run's

    @classmethod
    def defaults(cls) -> dict:
        """Every setting that has a plain default, by name (``data``, ``out`` and the list
        fields have none)."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}

    def input_size(self) -> int:
        """The model's input size: ``img_size``, else the ``init`` checkpoint's, else the
        architecture's. The data is prepared at this size and the model built for it."""
        if self.img_size:
            return self.img_size
        if self.init:
            from pocketsam.checkpoints import config_from_state_dict, read_checkpoint

            return config_from_state_dict(*read_checkpoint(self.init)).img_size
        from pocketsam.models import MODEL_CONFIGS

        return MODEL_CONFIGS[self.arch].img_size

    def validate(self) -> None:
        for name in ("lr", "weight_decay", "grad_clip", "box_prob", "mask_feedback_prob", "focal_weight", "dice_weight"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise PocketSamError(f"{name.replace('_', ' ')} must be a finite number >= 0, got {value}")
        if self.lr == 0:
            raise PocketSamError("the learning rate must be > 0")
        if not 0 <= self.adam_beta2 < 1:
            raise PocketSamError(f"adam beta2 must be in [0, 1), got {self.adam_beta2}")
        if self.resume and self.overwrite:
            raise PocketSamError("--resume and --overwrite contradict each other", "choose one")
        if self.num_workers < 0 or self.val_images < 0 or self.masks_per_image < 1 or self.rounds < 1:
            raise PocketSamError("workers and validation images must be >= 0, masks per image and rounds >= 1")
        if min(self.save_every, self.log_every) < 1 or self.eval_every < 0 or self.warmup_steps < 0:
            raise PocketSamError("save/log intervals must be >= 1, eval interval and warm-up >= 0")
        if self.img_size is not None and (self.img_size < 64 or self.img_size % 64):
            raise PocketSamError(
                f"input size {self.img_size} is not a positive multiple of 64", "use e.g. 256, 512 or 1024"
            )
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise PocketSamError(f"--out '{self.out}' is a file", "give a folder for the run")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise PocketSamError(f"unknown precision '{self.precision}'", "use fp32, bf16 or fp16")
        bad = [p for p in self.freeze if p not in PARTS]
        if bad:
            raise PocketSamError(f"cannot freeze {bad}", f"choose from {', '.join(PARTS)}")
        if self.steps < 1 or self.batch_size < 1 or self.accum_steps < 1:
            raise PocketSamError("steps, batch size and accumulation steps must be positive")
        from pocketsam.models import MODEL_CONFIGS

        if self.init is None and self.arch not in MODEL_CONFIGS:
            raise PocketSamError(f"unknown architecture '{self.arch}'", f"use one of {', '.join(MODEL_CONFIGS)}")
