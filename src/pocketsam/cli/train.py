"""``pocketsam train``: SAM-style training on SA-1B / COCO / synthetic data."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
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
    src.add_argument("--masks-per-image", type=int, default=16, help="instances sampled per image (default 16)")
    src.add_argument("--workers", type=int, default=2, help="data-loading processes (default 2)")
    src.add_argument("--no-augment", action="store_true", help="no flips or scale jitter")

    m = p.add_argument_group("model")
    m.add_argument("--arch", default="pocketsam_tiny", help="registered architecture (default pocketsam_tiny)")
    m.add_argument("--img-size", type=int, help="input size (default: the architecture's, or the --init checkpoint's); with --init, fine-tunes a TinyViT model at this size")
    m.add_argument("--init", metavar="CKPT", help="start from this checkpoint (its architecture is used)")
    m.add_argument("--freeze", nargs="*", default=[], choices=["image_encoder", "prompt_encoder", "mask_decoder"])

    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=2000)
    o.add_argument("--batch-size", type=int, default=4, help="images per process per micro-step")
    o.add_argument("--accum", type=int, default=1, help="gradient accumulation micro-steps")
    o.add_argument("--lr", type=float, default=4e-4)
    o.add_argument("--weight-decay", type=float, default=0.05)
    o.add_argument("--warmup", type=int, default=100, help="linear warm-up steps, then cosine decay")
    o.add_argument("--grad-clip", type=float, default=1.0)
    o.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="bf16 autocast helps on GPUs; on CPUs fp32 trains faster (measured: bf16 backward is slower)")
    o.add_argument("--rounds", type=int, default=3, help="prompting rounds per mask (first prompt + corrections)")
    o.add_argument("--box-prob", type=float, default=0.5, help="share of masks whose first prompt is a box")
    o.add_argument("--focal-weight", type=float, default=20.0, help="focal loss weight (SAM: 20)")
    o.add_argument("--dice-weight", type=float, default=1.0, help="dice loss weight (SAM: 1)")
    o.add_argument("--seed", type=int, default=0)

    r = p.add_argument_group("run")
    r.add_argument("--out", required=True, metavar="DIR", help="checkpoints, metrics.jsonl and the exported model")
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint_last.pt")
    r.add_argument("--save-every", type=int, default=100)
    r.add_argument("--log-every", type=int, default=10)
    r.add_argument("--eval-every", type=int, default=0, help="held-out mIoU every N steps (0: at the end)")
    r.add_argument("--val-images", type=int, default=16, help="images held out from the end of the data")
    r.add_argument("--tensorboard", action="store_true")
    r.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the local GPU if any)")
    r.add_argument("--threads", type=int, help="CPU threads for torch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from pocketsam.errors import InputError
    from pocketsam.train import TrainConfig, Trainer
    from pocketsam.train.data import build_training_set

    if not args.data and not args.coco:
        raise InputError("no training data given", "pass --data DIR (SA-1B layout) and/or --coco FILE --coco-images DIR")
    if bool(args.coco) != bool(args.coco_images):
        raise InputError("--coco and --coco-images go together", "give both the annotations file and the image folder")
    for d in args.data:
        if not Path(d).is_dir():
            raise InputError(f"data folder '{d}' does not exist", "generate scenes with `pocketsam data synth --out DIR`")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        data=list(args.data), out=args.out, arch=args.arch, img_size=args.img_size, init=args.init,
        steps=args.steps, batch_size=args.batch_size, masks_per_image=args.masks_per_image,
        accum_steps=args.accum, lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup,
        grad_clip=args.grad_clip, precision=args.precision, freeze=list(args.freeze), rounds=args.rounds,
        box_prob=args.box_prob, focal_weight=args.focal_weight, dice_weight=args.dice_weight, save_every=args.save_every, log_every=args.log_every,
        eval_every=args.eval_every, val_images=args.val_images, num_workers=args.workers, seed=args.seed,
        tensorboard=args.tensorboard, device=args.device, resume=args.resume,
    )
    cfg.validate()
    img_size = _input_size(cfg)
    dataset, collate = build_training_set(
        args.data, args.coco, args.coco_images, img_size, cfg.masks_per_image, augment=not args.no_augment, seed=cfg.seed
    )
    result = Trainer(cfg, dataset, collate).fit()
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        print(f"done: {shown}")
        print(f"model: {Path(args.out) / 'model.safetensors'} (load with pocketsam.build_sam(checkpoint=...))")
    return 0


def _input_size(cfg) -> int:
    if cfg.img_size:
        return cfg.img_size
    if cfg.init:
        from pocketsam.checkpoints import config_from_state_dict, read_checkpoint

        return config_from_state_dict(*read_checkpoint(cfg.init)).img_size
    from pocketsam.models import MODEL_CONFIGS

    return MODEL_CONFIGS[cfg.arch].img_size
