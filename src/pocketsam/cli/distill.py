"""``pocketsam distill``: make a small SAM from a big one (MobileSAM / TinySAM).

    pocketsam distill cache --teacher sam_vit_h.pth --data images/ --cache cache/
    pocketsam distill train --stage encoder --teacher sam_vit_h.pth --student mobile_sam \\
        --data images/ --cache cache/ --out runs/mobile
"""

from __future__ import annotations

import argparse

from pocketsam.cli.common import add_engine_options, engine_config, report, resolve_checkpoint


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint, anything build_sam loads (default: the bundled model)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="folders of images; SA-1B *.json annotations beside them are used where present (stage full)")
    p.add_argument("--flip", action="store_true", help="also cache flipped images and train with random horizontal flips (2x cache)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="distill a small SAM from a teacher (MobileSAM decoupled / TinySAM full-stage)",
        description="Stage 'encoder' (MobileSAM): the student encoder regresses the teacher's cached image "
        "embeddings and reuses the teacher's decoder. Stage 'full' (TinySAM): embedding + decoder-token + "
        "mask-logit losses with hard prompt sampling and hard mask weighting.",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    c = verbs.add_parser("cache", help="compute the teacher's image embeddings once (fp16, resumable)")
    _common(c)
    c.add_argument("--cache", required=True, metavar="DIR", help="cache folder (one sub-folder per teacher and transform)")
    c.add_argument("--batch-size", type=int, default=8)
    c.add_argument("--device", help="cpu, cuda ... (default: the local GPU if any)")
    c.add_argument("--threads", type=int, help="CPU threads for torch")
    c.set_defaults(func=run_cache)

    t = verbs.add_parser("train", help="train a student against the teacher")
    _common(t)
    t.add_argument("--stage", choices=["encoder", "full"], default="encoder")
    t.add_argument("--student", default="pocketsam_nano", metavar="ARCH|CKPT",
                   help="a registered architecture (e.g. pocketsam_nano, mobile_sam) or a checkpoint to start from (default pocketsam_nano)")
    t.add_argument("--img-size", type=int, help="the student's input size (default: its architecture's)")
    t.add_argument("--cache", metavar="DIR", help="teacher-embedding cache (default OUT/teacher_cache); filled first if incomplete")
    s = t.add_argument_group("full stage")
    s.add_argument("--embed-weight", type=float, default=1.0, help="embedding MSE weight")
    s.add_argument("--token-weight", type=float, default=1.0, help="decoder output-token MSE weight")
    s.add_argument("--logit-weight", type=float, default=1.0, help="mask-logit soft-BCE weight")
    s.add_argument("--no-hard-prompts", action="store_true", help="later points uniformly from the image instead of where student and teacher disagree")
    s.add_argument("--no-hard-mask-weighting", action="store_true", help="weigh every prompt equally")
    s.add_argument("--hard-gamma", type=float, default=1.0, help="hard mask weighting strength: weight 1 + gamma * (1 - IoU(student, teacher)), normalised to mean 1")
    add_engine_options(t, rounds_help="stage full: prompting rounds (first prompt + one added point per round)")
    t.set_defaults(func=run_train)


def _teacher(args) -> str:
    return str(resolve_checkpoint(args.teacher))


def run_cache(args: argparse.Namespace) -> int:
    import torch

    from pocketsam.distill import fill_cache, load_teacher, open_cache
    from pocketsam.distill.data import collect_images
    from pocketsam.errors import InputError

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    teacher = load_teacher(_teacher(args), device)
    images = collect_images(args.data)
    cache = open_cache(args.cache, teacher, args.flip)
    done = len(images) - len(cache.missing(im.sha256 for im in images))
    if done:
        print(f"{done} of {len(images)} image(s) already cached")
    n = fill_cache(cache, teacher, images, batch_size=args.batch_size)
    print(f"cached {n} new teacher embedding(s); {len(cache)} in {cache.dir}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pocketsam.distill import DistillConfig, LossWeights, distill
    from pocketsam.errors import InputError
    from pocketsam.models import MODEL_CONFIGS

    student = args.student
    if student in MODEL_CONFIGS:
        arch, init = student, None
    elif Path(student).is_file():
        arch, init = "pocketsam_nano", student
    else:
        raise InputError(
            f"student '{student}' is neither a registered architecture nor a checkpoint file",
            f"use one of {', '.join(MODEL_CONFIGS)}, or the path of a checkpoint",
        )
    cfg = engine_config(args, data=list(args.data), arch=arch, init=init, img_size=args.img_size)
    dcfg = DistillConfig(
        teacher=_teacher(args), stage=args.stage, cache=args.cache, flip=args.flip,
        weights=LossWeights(args.embed_weight, args.token_weight, args.logit_weight),
        hard_prompts=not args.no_hard_prompts, hard_mask_weighting=not args.no_hard_mask_weighting, gamma=args.hard_gamma,
    )
    report(distill(cfg, dcfg), args.out)
    return 0
