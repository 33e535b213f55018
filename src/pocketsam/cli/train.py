"""``pocketsam train``: SAM-style training on SA-1B / COCO / synthetic data.

The optimisation and run options are shared with ``pocketsam distill train``
(:func:`pocketsam.cli.common.add_engine_options`, :func:`~pocketsam.cli.common.engine_config`); their defaults are
:class:`~pocketsam.train.config.TrainConfig`'s.
"""

from __future__ import annotations

import argparse

from pocketsam.cli.common import add_engine_options, engine_defaults, engine_config, report


def register(sub: argparse._SubParsersAction) -> None:
    d = engine_defaults()
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
    m.add_argument("--init", metavar="CKPT", help="start from this checkpoint (its architecture is used; bundled: the bundled model)")
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
    if args.init is not None:  # a path, `bundled` or downloaded official weights, as a path the engine reads
        from pocketsam.cli.common import resolve_checkpoint

        args.init = str(resolve_checkpoint(args.init))
    cfg = engine_config(
        args, data=list(args.data), arch=args.arch, img_size=args.img_size, init=args.init,
        freeze=list(args.freeze), focal_weight=args.focal_weight, dice_weight=args.dice_weight,
    )
    dataset, collate = build_training_set(
        args.data, args.coco, args.coco_images, cfg.input_size(), cfg.masks_per_image, augment=not args.no_augment, seed=cfg.seed
    )
    report(Trainer(cfg, dataset, collate).fit(), args.out)
    return 0
