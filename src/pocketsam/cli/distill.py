"""``pocketsam distill``: make a small SAM from a big one (MobileSAM / TinySAM).

    pocketsam distill cache --teacher sam_vit_h.pth --data images/ --cache cache/
    pocketsam distill train --stage encoder --teacher sam_vit_h.pth --student mobile_sam \\
        --data images/ --cache cache/ --out runs/mobile
"""

from __future__ import annotations

import argparse

from pocketsam.cli.common import add_engine_options, engine_config, report, resolve_checkpoint

#: What each stage trains with unless told otherwise. ``warmup``: a share of ``--steps``
#: when below 1, else steps.
#: * encoder: measured (issue 26; docs/training.md, "Distillation defaults: the learning
#:   curve" and the sections after it). The training engine's defaults (lr 4e-4, 100
#:   warm-up steps, cosine to 5 %, wd 0.05) suit SAM training from scratch; embedding
#:   regression learns much faster with a one-cycle-like schedule at 15x the lr (agreement
#:   with the teacher rises with lr up to 6e-3; 1e-2 is no better at 1,200 steps and much
#:   worse at 400). AdamW's beta2 0.99 instead of 0.999: the gradients shrink ~15x over a
#:   short run, and a second-moment average over ~1,000 steps keeps the early, large ones
#:   and damps every later step (+0.004 box mIoU vs the teacher at 1,200 steps, paired by
#:   seed). 8 views (the teacher's embedding of each mirror and quarter turn, cached): the
#:   student's held-out error is twice its training error, and 4x the distinct targets
#:   narrow that gap (+0.016 at 1,200 steps on 200 images, paired by seed, against
#:   mirrors only). Detail weight 1: the error's fine part costs more agreement than its
#:   coarse part of equal size (+0.007 paired; +0.005 on top of 8 views).
#: * full: the engine's optimisation (nothing measured says otherwise); 2 views and no
#:   detail weight, as every measured full-stage row ran. Its decoder stays the teacher's
#:   unless --train-decoder (DistillConfig.train_decoder: measured, it lost agreement).
STAGE_DEFAULTS = {
    "encoder": {"lr": 6e-3, "weight_decay": 0.01, "warmup": 0.3, "min_lr_ratio": 0.0, "adam_beta2": 0.99, "views": 8,
                "detail_weight": 1.0},
    "full": {"lr": 4e-4, "weight_decay": 0.05, "warmup": 100, "min_lr_ratio": 0.05, "adam_beta2": 0.999, "views": 2,
             "detail_weight": 0.0},
}
#: ``distill cache`` stores the views the encoder stage trains on, so that a cache built
#: first is the one training then reads.
CACHE_VIEWS = STAGE_DEFAULTS["encoder"]["views"]


def _stage_help(key: str) -> str:
    values = {stage: d[key] for stage, d in STAGE_DEFAULTS.items()}
    if len(set(values.values())) == 1:
        return f"default {values['encoder']}"
    return "default " + ", ".join(f"{v} (stage {stage})" for stage, v in values.items())


def _common(p: argparse.ArgumentParser, train: bool) -> None:
    p.add_argument("--teacher", metavar="CKPT", help="teacher checkpoint, anything build_sam loads (default: bundled, the bundled model)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="folders of images; SA-1B *.json annotations beside them are used where present (stage full)")
    p.add_argument("--views", type=int, default=None, metavar="N",
                   help="views of each image the teacher embeds once and training draws from: 1 the image as is, 2 and its "
                        "left-right mirror, 4 and the up-down mirrors, 8 and their quarter turns (the cache and the "
                        "teacher's time grow with them; "
                        + (_stage_help("views") if train else f"default {CACHE_VIEWS}, what stage encoder trains on") + ")")
    # the names before --views existed
    p.add_argument("--flip", dest="views", action="store_const", const=2, help=argparse.SUPPRESS)
    p.add_argument("--no-flip", dest="views", action="store_const", const=1, help=argparse.SUPPRESS)


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
    _common(c, train=False)
    c.add_argument("--cache", required=True, metavar="DIR", help="cache folder (one sub-folder per teacher and transform)")
    c.add_argument("--batch-size", type=int, default=8)
    c.add_argument("--device", help="cpu, cuda ... (default: the local GPU if any)")
    c.add_argument("--threads", type=int, help="CPU threads for torch")
    c.set_defaults(func=run_cache)

    t = verbs.add_parser("train", help="train a student against the teacher")
    _common(t, train=True)
    t.add_argument("--stage", choices=["encoder", "full"], default="encoder")
    t.add_argument("--student", default="pocketsam_nano", metavar="ARCH|CKPT",
                   help="a registered architecture (e.g. pocketsam_nano, mobile_sam) or a checkpoint to start from (default pocketsam_nano)")
    t.add_argument("--img-size", type=int, help="the student's input size (default: its architecture's)")
    t.add_argument("--cache", metavar="DIR", help="teacher-embedding cache (default OUT/teacher_cache); filled first if incomplete")
    t.add_argument("--detail-weight", type=float, default=None, metavar="W",
                   help="extra weight on the embedding error's fine part, each cell less its 3x3 mean "
                        f"({_stage_help('detail_weight')})")
    t.add_argument("--distance", choices=["l2", "l1"], default="l2",
                   help="how the embedding (and stage full's decoder-token) errors are measured: l2, the mean squared "
                        "error (MobileSAM's), or l1, the mean absolute error (TinySAM's paper) (default l2)")
    s = t.add_argument_group("full stage")
    s.add_argument("--embed-weight", type=float, default=1.0, help="embedding loss weight")
    s.add_argument("--token-weight", type=float, default=1.0, help="decoder output-token loss weight")
    s.add_argument("--logit-weight", type=float, default=1.0, help="mask-logit soft-BCE weight")
    s.add_argument("--no-hard-prompts", action="store_true", help="later points uniformly from the image instead of where student and teacher disagree")
    s.add_argument("--no-hard-mask-weighting", action="store_true", help="weigh every prompt equally")
    s.add_argument("--hard-gamma", type=float, default=1.0, help="hard mask weighting strength: weight 1 + gamma * (1 - IoU(student, teacher)), normalised to mean 1")
    s.add_argument("--train-decoder", action="store_true", default=None,
                   help="train the prompt encoder and mask decoder too, as TinySAM's paper does (default: they stay "
                        "the teacher's and only the encoder learns, from all three losses; a trained decoder lost "
                        "agreement with the teacher in pocketsam's measurements). --resume keeps what the run began with")
    add_engine_options(t, rounds_help="stage full: prompting rounds (first prompt + one added point per round)")
    # the stage decides these unless they are given (STAGE_DEFAULTS)
    t.set_defaults(lr=None, weight_decay=None, warmup=None, adam_beta2=None)
    for action in t._actions:
        if action.dest == "lr":
            action.help = f"peak learning rate ({_stage_help('lr')})"
        elif action.dest == "weight_decay":
            action.help = f"AdamW weight decay ({_stage_help('weight_decay')})"
        elif action.dest == "adam_beta2":
            action.help = f"AdamW's second-moment decay ({_stage_help('adam_beta2')})"
        elif action.dest == "warmup":
            action.type = float
            action.help = f"linear warm-up, then cosine decay: steps, or a share of --steps when below 1 ({_stage_help('warmup')})"
    t.add_argument("--min-lr-ratio", type=float, default=None,
                   help=f"the cosine decay's end, as a share of --lr ({_stage_help('min_lr_ratio')})")
    t.set_defaults(func=run_train)


def _teacher(args) -> str:
    return str(resolve_checkpoint(args.teacher))


def run_cache(args: argparse.Namespace) -> int:
    import torch

    from pocketsam.distill import fill_cache, load_teacher, open_cache
    from pocketsam.train.embeddings import collect_images
    from pocketsam.errors import InputError

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    teacher = load_teacher(_teacher(args), device)
    images = collect_images(args.data)
    cache = open_cache(args.cache, teacher, CACHE_VIEWS if args.views is None else args.views)
    done = len(images) - len(cache.missing(im.sha256 for im in images))
    if done:
        print(f"{done} of {len(images)} image(s) already cached")
    n = fill_cache(cache, teacher, images, batch_size=args.batch_size)
    print(f"cached {n} new teacher embedding(s); {len(cache)} in {cache.dir}")
    return 0


def _started_with(out) -> dict | None:
    """The settings of the run in ``out`` (its last checkpoint's), or None."""
    import json

    import torch

    path = out / "checkpoint_last.pt"
    if not path.is_file():
        return None
    try:
        return json.loads(torch.load(path, map_location="cpu", weights_only=True)["config"])
    except Exception:  # noqa: BLE001 - unreadable: the engine's resume says so, with its own message
        return None


def _started_settings(started: dict) -> dict:
    """The distillation settings in a saved run's config, in today's terms."""
    from pocketsam.distill.run import upgrade_settings

    return upgrade_settings({k[len("step."):]: v for k, v in started.items() if k.startswith("step.")})


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pocketsam.distill import DistillConfig, LossWeights, distill
    from pocketsam.errors import InputError
    from pocketsam.models import MODEL_CONFIGS

    from pocketsam.weights import resolve_checkpoint_name

    student = args.student
    if student in MODEL_CONFIGS:
        arch, init = student, None
    elif resolve_checkpoint_name(student).is_file():  # a path, `bundled` or downloaded official weights
        arch, init = "pocketsam_nano", str(resolve_checkpoint_name(student))
    else:
        raise InputError(
            f"student '{student}' is neither a registered architecture nor a checkpoint file",
            f"use one of {', '.join(MODEL_CONFIGS)}, or the path of a checkpoint",
        )
    for key, value in STAGE_DEFAULTS[args.stage].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not 0 <= args.min_lr_ratio <= 1:
        raise InputError(f"--min-lr-ratio must be between 0 and 1, got {args.min_lr_ratio}")
    if not args.warmup >= 0:
        raise InputError(f"--warmup must be >= 0, got {args.warmup}")
    # what a resumed run began with, read once where a setting below is taken from it
    need_started = args.resume and (args.warmup < 1 or args.train_decoder is None)
    started = _started_with(Path(args.out)) if need_started else None
    if args.warmup < 1:  # a share of the steps the run was started with: `--resume --steps N` only stretches the cosine
        args.warmup = started["warmup_steps"] if started else round(args.warmup * args.steps)
    args.warmup = int(args.warmup)
    if args.train_decoder is None:  # a resumed run goes on as it began
        args.train_decoder = bool(started) and _started_settings(started)["train_decoder"]
    cfg = engine_config(args, data=list(args.data), arch=arch, init=init, img_size=args.img_size)
    cfg.min_lr_ratio = args.min_lr_ratio
    dcfg = DistillConfig(
        teacher=_teacher(args), stage=args.stage, cache=args.cache, views=args.views,
        weights=LossWeights(args.embed_weight, args.token_weight, args.logit_weight),
        hard_prompts=not args.no_hard_prompts, hard_mask_weighting=not args.no_hard_mask_weighting, gamma=args.hard_gamma,
        detail=args.detail_weight, distance=args.distance, train_decoder=args.train_decoder,
    )
    report(distill(cfg, dcfg), args.out)
    return 0
