"""``pocketsam train``: SAM-style training on SA-1B / COCO / synthetic data.

The optimisation and run options are shared with ``pocketsam distill train``
(:func:`add_engine_options`, :func:`engine_config`); their defaults are
:class:`~pocketsam.train.config.TrainConfig`'s.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any


def _defaults() -> dict[str, Any]:
    from pocketsam.train.config import TrainConfig

    return {f.name: f.default for f in fields(TrainConfig) if not callable(f.default_factory)}


def add_engine_options(p: argparse.ArgumentParser, rounds_help: str) -> None:
    """The training engine's options: optimisation, prompting rounds and the run folder."""
    d = _defaults()
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=d["steps"])
    o.add_argument("--batch-size", type=int, default=d["batch_size"], help=f"images per process per micro-step (default {d['batch_size']})")
    o.add_argument("--masks-per-image", type=int, default=d["masks_per_image"], help=f"instances (prompts) per image (default {d['masks_per_image']})")
    o.add_argument("--accum", type=int, default=d["accum_steps"], help="gradient accumulation micro-steps")
    o.add_argument("--lr", type=float, default=d["lr"])
    o.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    o.add_argument("--warmup", type=int, default=d["warmup_steps"], help="linear warm-up steps, then cosine decay")
    o.add_argument("--grad-clip", type=float, default=d["grad_clip"])
    o.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=d["precision"],
                   help="bf16 autocast helps on GPUs; on CPUs fp32 trains faster (measured: bf16 backward is slower)")
    o.add_argument("--rounds", type=int, default=d["rounds"], help=rounds_help)
    o.add_argument("--box-prob", type=float, default=d["box_prob"], help="share of masks whose first prompt is a box")
    o.add_argument("--seed", type=int, default=d["seed"])

    r = p.add_argument_group("run")
    r.add_argument("--out", required=True, metavar="DIR", help="checkpoints, metrics.jsonl and the exported model")
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint_last.pt")
    r.add_argument("--overwrite", action="store_true", help="start again in an OUT that already holds a run")
    r.add_argument("--allow-config-change", action="store_true", help="with --resume: continue even if settings differ from the saved run's")
    r.add_argument("--save-every", type=int, default=d["save_every"])
    r.add_argument("--log-every", type=int, default=d["log_every"])
    r.add_argument("--eval-every", type=int, default=d["eval_every"], help="held-out validation every N steps (0: at the end)")
    r.add_argument("--val-images", type=int, default=d["val_images"], help="images held out from the end of the data")
    r.add_argument("--workers", type=int, default=d["num_workers"], help="data-loading processes")
    r.add_argument("--tensorboard", action="store_true")
    r.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the local GPU if any)")
    r.add_argument("--threads", type=int, help="CPU threads for torch")


def engine_config(args: argparse.Namespace, **fixed: Any):
    """A validated :class:`TrainConfig` from :func:`add_engine_options`' arguments plus
    the command's own fields (``data``, ``arch``, ``init``...)."""
    import torch

    from pocketsam.errors import InputError
    from pocketsam.train import TrainConfig

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        out=args.out, steps=args.steps, batch_size=args.batch_size, masks_per_image=args.masks_per_image,
        accum_steps=args.accum, lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup,
        grad_clip=args.grad_clip, precision=args.precision, rounds=args.rounds, box_prob=args.box_prob,
        save_every=args.save_every, log_every=args.log_every, eval_every=args.eval_every,
        val_images=args.val_images, num_workers=args.workers, seed=args.seed, tensorboard=args.tensorboard,
        device=args.device, resume=args.resume, overwrite=args.overwrite,
        allow_config_change=args.allow_config_change, **fixed,
    )
    cfg.validate()
    return cfg


def report(result: dict[str, Any], out: str) -> None:
    import os
    from pathlib import Path

    if int(os.environ.get("RANK", "0")) == 0:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        print(f"done: {shown}")
        print(f"model: {Path(out) / 'model.safetensors'} (load with pocketsam.build_sam(checkpoint=...))")


def register(sub: argparse._SubParsersAction) -> None:
    d = _defaults()
    p = sub.add_parser(
        "train",
        help="train a SAM-family model (CPU, one GPU, or torchrun for many)",
        description="SAM-style training with simulated interactive prompts. Run under "
        "`torchrun --nproc-per-node N -m pocketsam train ...` for multi-process DDP.",
    )
    src = p.add_argument_group("data")
    src.add_argument("--data", nargs="+", default=[], metavar="DIR", help="SA-1B-layout folders (jpg + json per image)")
    src.add_argument("--coco", metavar="ANNOTATIONS.json", help="COCO instances file (with --coco-images)")
    src.add_argument("--coco-images", metavar="DIR", help="folder of the COCO images")
    src.add_argument("--no-augment", action="store_true", help="no flips or scale jitter")

    m = p.add_argument_group("model")
    m.add_argument("--arch", default=d["arch"], help=f"registered architecture (default {d['arch']})")
    m.add_argument("--img-size", type=int, help="input size (default: the architecture's, or the --init checkpoint's); with --init, fine-tunes a TinyViT model at this size")
    m.add_argument("--init", metavar="CKPT", help="start from this checkpoint (its architecture is used)")
    m.add_argument("--freeze", nargs="*", default=[], choices=["image_encoder", "prompt_encoder", "mask_decoder"])

    add_engine_options(p, rounds_help="prompting rounds per mask (first prompt + corrections)")
    o = p.add_argument_group("losses")
    o.add_argument("--focal-weight", type=float, default=d["focal_weight"], help="focal loss weight (SAM: 20)")
    o.add_argument("--dice-weight", type=float, default=d["dice_weight"], help="dice loss weight (SAM: 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pocketsam.errors import InputError
    from pocketsam.train import Trainer
    from pocketsam.train.data import build_training_set

    if not args.data and not args.coco:
        raise InputError("no training data given", "pass --data DIR (SA-1B layout) and/or --coco FILE --coco-images DIR")
    if bool(args.coco) != bool(args.coco_images):
        raise InputError("--coco and --coco-images go together", "give both the annotations file and the image folder")
    for d in args.data:
        if not Path(d).is_dir():
            raise InputError(f"data folder '{d}' does not exist", "generate scenes with `pocketsam data synth --out DIR`")
    cfg = engine_config(
        args, data=list(args.data), arch=args.arch, img_size=args.img_size, init=args.init,
        freeze=list(args.freeze), focal_weight=args.focal_weight, dice_weight=args.dice_weight,
    )
    dataset, collate = build_training_set(
        args.data, args.coco, args.coco_images, cfg.input_size(), cfg.masks_per_image, augment=not args.no_augment, seed=cfg.seed
    )
    report(Trainer(cfg, dataset, collate).fit(), args.out)
    return 0
