"""The training loop: one code path from a laptop CPU to a torchrun cluster.

* Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the step is wrapped in DDP, with
  ``gloo`` on CPU and ``nccl`` on GPU; each rank reads its own slice of every global batch;
  only rank 0 logs and saves.
* Nothing lost: ``checkpoint_last.pt`` (model, optimizer, scheduler, scaler, RNG, data
  position) is written atomically every ``save_every`` steps and at the end; ``resume``
  continues exactly where it stopped.
* Visible: a tqdm bar with loss and speed, ``metrics.jsonl``, optional TensorBoard, and a
  quick held-out mIoU every ``eval_every`` steps.
* Safe run folders: a folder that already holds a run is never silently restarted
  (``resume`` continues it, ``overwrite`` starts again); resuming with different settings
  is refused unless ``allow_config_change``; metrics rows past the resumed step are
  dropped, so ``metrics.jsonl`` always describes one run.

What a step computes is pluggable: the engine trains any ``nn.Module`` step made from the
model by ``step_factory`` whose ``forward(batch, generator)`` returns ``(loss, logs)`` and
whose ``evaluate(batch)`` returns held-out metrics. SAM-style training
(:class:`~pocketsam.train.step.SamTrainStep`) is the default; distillation
(:mod:`pocketsam.distill`) is another step on the same loop.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from pocketsam.checkpoints import export_state_dict, save_checkpoint
from pocketsam.errors import PocketSamError
from pocketsam.io import atomic_write, remove_stale_temporaries, write_text_atomic
from pocketsam.models import MODEL_CONFIGS, create_model
from pocketsam.runtime.load import build_sam
from pocketsam.train.config import PARTS, TrainConfig  # noqa: F401  (re-exported)
from pocketsam.train.sampler import ResumableBatchSampler
from pocketsam.train.step import SamTrainStep


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_write(path) as f:
        torch.save(obj, f)


#: Settings that may differ when a run is resumed: they change neither the data order nor
#: the optimisation (a longer ``steps`` stretches the cosine tail and is allowed).
RESUMABLE_CHANGES = frozenset(
    {"steps", "save_every", "log_every", "eval_every", "num_workers", "tensorboard", "device", "resume",
     "overwrite", "allow_config_change", "out", "data"}
)

RUN_FILES = ("checkpoint_last.pt", "metrics.jsonl", "model.pth", "model.safetensors")


class Trainer:
    """Build everything from a :class:`TrainConfig` and a dataset, then :meth:`fit`.

    The dataset's items are dicts (see :class:`~pocketsam.train.step.SamTrainStep`) and it
    is indexed with ``(index, seed)`` pairs so augmentation is reproducible on resume.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        dataset: Dataset,
        collate_fn=None,
        val_dataset: Dataset | None = None,
        step_factory: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
        settings: dict[str, Any] | None = None,
        upgrade_settings: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """``step_factory(model)`` makes the step module (default: SAM-style training
        from ``cfg``); ``settings`` are the step's own options, saved with the run and
        compared on resume like ``cfg``; ``upgrade_settings`` turns the step options a run
        saved by an older pocketsam into today's names and defaults before that check."""
        cfg.validate()
        self.cfg = cfg
        self.rank, self.world, local_rank = _dist_info()
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        if cfg.device:
            self.device = torch.device(cfg.device)
        elif torch.cuda.is_available():
            self.device = torch.device("cuda", local_rank)
        else:
            self.device = torch.device("cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(cfg.out)
        self.settings = dict(settings or {})
        self.upgrade_settings = upgrade_settings
        self._check_run_folder()
        if self.rank == 0:  # what a killed run left half-written (atomic_torch_save's, pocketsam.io's)
            remove_stale_temporaries(self.out, also=r"\.checkpoint_last\.pt\.tmp\d+")

        torch.manual_seed(cfg.seed)
        self.model = self._build_model().to(self.device)
        self.model.train()
        if step_factory is None:
            self.step_module = SamTrainStep(
                self.model, cfg.rounds, cfg.box_prob, cfg.mask_feedback_prob, cfg.focal_weight, cfg.dice_weight
            )
        else:
            self.step_module = step_factory(self.model)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self.runner: torch.nn.Module = self.step_module
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.runner = torch.nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=ids, find_unused_parameters=True
            )
        self.optimizer = self._build_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.generator = torch.Generator(self.device)  # reseeded from (seed, rank, step) every step

        self.dataset, self.collate_fn = dataset, collate_fn
        n = len(dataset)
        self.val_dataset = val_dataset
        self.val_indices: list[int] = []
        if val_dataset is None and cfg.val_images > 0 and n > cfg.val_images * 2:
            self.val_dataset = dataset
            self.val_indices = list(range(n - cfg.val_images, n))
            self.train_count = n - cfg.val_images
        else:
            self.train_count = n
            if val_dataset is not None:
                self.val_indices = list(range(min(len(val_dataset), cfg.val_images)))
            elif cfg.val_images > 0 and self.rank == 0:
                print(
                    f"validation is off: {n} image(s) cannot spare {cfg.val_images} for validation "
                    f"(it needs more than {2 * cfg.val_images}); pass --val-images 0 to silence this"
                )
        self.step = 0
        if cfg.resume:
            self._resume()
        self._tb = None

    # ------------------------------------------------------------------ setup
    def _check_run_folder(self) -> None:
        """Never restart or mix runs silently (see the module docstring)."""
        found = [name for name in RUN_FILES if (self.out / name).exists()]
        if self.cfg.resume:
            models = [n for n in found if n.startswith("model.")]
            if models and "checkpoint_last.pt" not in found:  # training on would replace them
                raise PocketSamError(
                    f"cannot resume '{self.out}': it holds {', '.join(models)} but no checkpoint_last.pt to resume from",
                    "pass --overwrite to train again from the start (replacing them), or choose a new --out",
                )
            return
        if not found:
            return
        if not self.cfg.overwrite:
            raise PocketSamError(
                f"'{self.out}' already holds a run ({', '.join(found)})",
                "pass --resume to continue it, --overwrite to start it again, or choose a new --out",
            )
        if self.rank == 0:
            for name in found:
                (self.out / name).unlink()
            print(f"--overwrite: removed the previous run's {', '.join(found)} from {self.out}")

    def _saved_settings(self) -> dict[str, Any]:
        return {**asdict(self.cfg), **{f"step.{k}": v for k, v in self.settings.items()}}

    def _build_model(self):
        cfg = self.cfg
        if cfg.init:
            model = build_sam(checkpoint=cfg.init, img_size=cfg.img_size)  # e.g. fine-tune at a higher resolution
            model.everything_defaults = {}  # the init's thresholds do not describe the trained model
            model.proposal_head = None  # nor does its proposal head (trained on the old embeddings)
        else:
            config = MODEL_CONFIGS[cfg.arch]
            if cfg.img_size:
                config = config.with_img_size(cfg.img_size)
            model = create_model(config)
        for name in cfg.freeze:
            getattr(model, name).requires_grad_(False)
        for name in ("head", "norm_head"):  # TinyViT's ImageNet head is never used by SAM
            if hasattr(model.image_encoder, name):
                getattr(model.image_encoder, name).requires_grad_(False)
        return model

    def _build_optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or "embed" in name or "attention_biases" in name or "rel_pos" in name else decay).append(p)
        if not decay and not no_decay:
            raise PocketSamError("every part of the model is frozen", "freeze fewer parts")
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(0.9, self.cfg.adam_beta2))

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint_last.pt"

    def state(self) -> dict[str, Any]:
        return {
            "model": export_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "rng": {"torch": torch.get_rng_state()},
            "config": json.dumps(self._saved_settings()),
        }

    def save(self) -> None:
        if self.rank == 0:
            atomic_torch_save(self.state(), self.checkpoint_path)

    def _resume(self) -> None:
        path = self.checkpoint_path
        if not path.exists():  # said, never silent: --resume found nothing to resume
            if self.rank == 0:
                start = f"the weights of {self.cfg.init}" if self.cfg.init else "random weights"
                if (self.out / "metrics.jsonl").exists():
                    self._truncate_metrics(0)  # its rows describe steps this run does again
                    print(f"--resume: the run in '{self.out}' stopped before its first checkpoint; "
                          f"starting it again at step 0 from {start}")
                else:
                    print(f"--resume: '{self.out}' holds no run to resume; starting a new run at step 0 from {start}")
            return
        try:
            with warnings.catch_warnings():  # torch's note on the pickle protocol of its own files
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
            saved = json.loads(state["config"])
            self._check_same_settings(saved)
            model_state = {k: v for k, v in state["model"].items() if not k.startswith("pocketsam.")}
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.step = int(state["step"])
            torch.set_rng_state(state["rng"]["torch"])
        except PocketSamError:
            raise
        except Exception as exc:  # truncated file, pickle, another architecture's weights...
            raise PocketSamError(
                f"cannot resume from '{path}': {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                "it is damaged or belongs to another run; pass --overwrite to start again, or choose a new --out",
            ) from exc
        if self.rank == 0:
            self._truncate_metrics(self.step)
            print(f"resumed from {path} at step {self.step}")

    def _check_same_settings(self, saved: dict[str, Any]) -> None:
        now = self._saved_settings()
        # a run saved before a setting existed ran with that setting's default
        saved = {**TrainConfig.defaults(), **saved}
        if self.upgrade_settings:
            step = self.upgrade_settings({k[5:]: v for k, v in saved.items() if k.startswith("step.")})
            saved = {**{k: v for k, v in saved.items() if not k.startswith("step.")}, **{f"step.{k}": v for k, v in step.items()}}
        changed = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
        if not changed or self.cfg.allow_config_change:
            return
        shown = "; ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
        raise PocketSamError(
            f"the run in '{self.out}' was started with other settings ({shown}"
            f"{'; …' if len(changed) > 4 else ''})",
            "resume with the same settings, pass --allow-config-change to continue anyway, or choose a new --out",
        )

    def _truncate_metrics(self, step: int) -> None:
        """Drop the metrics rows a killed run wrote after its last checkpoint."""

        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        keep = [ln for ln in lines if ln.strip() and _row_step(ln) <= step]
        if len(keep) != len(lines):
            write_text_atomic("".join(ln + "\n" for ln in keep), path)

    # ------------------------------------------------------------------- loop
    def _loader(self):
        cfg = self.cfg
        start = self.step * cfg.accum_steps
        sampler = ResumableBatchSampler(self.train_count, cfg.batch_size, cfg.seed, self.rank, self.world, start)
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
            pin_memory=self.device.type == "cuda",
        )

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _autocast(self):
        if self.cfg.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.cfg.tensorboard:
            if self._tb is None:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as exc:
                    raise PocketSamError("TensorBoard logging needs the 'tensorboard' package", "pip install tensorboard") from exc
                self._tb = SummaryWriter(str(self.out / "tb"))
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(k, v, record["step"])

    def fit(self) -> dict[str, Any]:
        from tqdm import tqdm

        cfg = self.cfg
        data = iter(self._loader())
        bar = tqdm(total=cfg.steps, initial=self.step, disable=self.rank != 0, desc="train", unit="step", dynamic_ncols=True)
        window: dict[str, float] = {}
        t0, seen = time.perf_counter(), 0
        last: dict[str, Any] = {}
        while self.step < cfg.steps:
            self.optimizer.zero_grad(set_to_none=True)
            # prompt sampling depends only on (seed, rank, step): exact on resume, any world size
            self.generator.manual_seed((cfg.seed * 1_000_003 + self.step) * 1_009 + self.rank)
            for micro in range(cfg.accum_steps):
                batch = self._to_device(next(data))
                sync = micro + 1 == cfg.accum_steps or self.world == 1
                ctx = self.runner.no_sync() if (not sync and hasattr(self.runner, "no_sync")) else contextlib.nullcontext()
                with ctx, self._autocast():
                    loss, logs = self.runner(batch, self.generator)
                self.scaler.scale(loss / cfg.accum_steps).backward()
                for k, v in {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}.items():
                    window[k] = window.get(k, 0.0) + v / cfg.accum_steps
                seen += len(batch["size"]) * self.world
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                n_steps = cfg.log_every if self.step % cfg.log_every == 0 else (self.step % cfg.log_every)
                elapsed = time.perf_counter() - t0
                last = {k: v / n_steps for k, v in window.items()}
                last.update(step=self.step, lr=self.scheduler.get_last_lr()[0], grad_norm=float(grad_norm),
                            images_per_s=seen / max(elapsed, 1e-9))
                shown = {k: f"{last[k]:.3g}" for k in ("loss", "iou", "embed_mse") if k in last}
                bar.set_postfix(**shown, img_s=f"{last['images_per_s']:.1f}")
                self._log(last)
                window, t0, seen = {}, time.perf_counter(), 0
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                self._log({"step": self.step, **self.evaluate()})
            if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                self.save()
        bar.close()
        final = {"step": self.step, **self.evaluate()}
        if self.world > 1:
            final["ranks_in_sync"] = self.ranks_in_sync()
        self._log(final)
        self.export()
        if self.world > 1:
            dist.barrier()
        return {**last, **final}

    # ------------------------------------------------------------ validation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if not self.val_indices or self.rank != 0:
            return {}
        self.model.eval()
        try:
            items = [self.val_dataset[(i, 0)] for i in self.val_indices]
            batch = self._to_device(self.collate_fn(items) if self.collate_fn else items[0])
            return self.step_module.evaluate(batch)
        finally:
            self.model.train()

    def ranks_in_sync(self) -> bool:
        """All ranks hold identical weights (DDP keeps them in step)."""
        vec = torch.cat([p.detach().float().flatten() for p in self.model.parameters()])
        checksum = torch.stack([vec.sum(), (vec * torch.arange(len(vec), device=vec.device) % 9973).sum()]).double()
        gathered = [torch.zeros_like(checksum) for _ in range(self.world)]
        dist.all_gather(gathered, checksum)
        return all(torch.allclose(g, gathered[0], rtol=0, atol=0) for g in gathered)

    def export(self) -> None:
        """Final model in the official layout: ``model.pth`` and ``model.safetensors``."""
        if self.rank != 0:
            return
        for name in ("model.pth", "model.safetensors"):
            save_checkpoint(self.model, self.out / name)


def _row_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return float("inf")  # an unreadable (half-written) row goes too
