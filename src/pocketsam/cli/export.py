"""``pocketsam export``: rewrite any SAM-family checkpoint in the official layout, as
safetensors or a plain state_dict, optionally in half precision, optionally recording the
thresholds "segment everything" should use with it (``--pred-iou-thresh`` ...)."""

from __future__ import annotations

import argparse

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
EVERYTHING_KEYS = ("pred_iou_thresh", "stability_score_thresh", "high_score_thresh")  # see checkpoints


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="convert a checkpoint (.pth/.pt/.safetensors) to safetensors or .pth, optionally fp16",
        description="Load a checkpoint (architecture detected from the file), then write it in the "
        "official layout with the metadata that makes its configuration recoverable. A .safetensors "
        "output never needs pickle to load.",
    )
    p.add_argument("checkpoint", help="input checkpoint")
    p.add_argument("--out", "-o", required=True, help="output file: .safetensors, or .pth/.pt")
    p.add_argument("--model-type", default=None, help="architecture name if it cannot be detected (e.g. tinysam)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                   help="precision of the stored weights (fp16 halves the file; loading gives float32)")
    g = p.add_argument_group(
        "recommended 'everything' thresholds",
        "stored in the file and used by `pocketsam everything` / `eval everything` when their options "
        "are left out (kept from the input checkpoint unless given)",
    )
    for key in EVERYTHING_KEYS:
        g.add_argument(f"--{key.replace('_', '-')}", type=float, default=None, metavar="X")
    g.add_argument("--drop-thresholds", action="store_true", help="store no recommendation (before the options above)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from pocketsam.checkpoints import build_sam, check_everything_setting, save_checkpoint
    from pocketsam.cli.segment import warnings_as_lines
    from pocketsam.errors import InputError

    if not str(args.out).endswith((".safetensors", ".pth", ".pt")):
        raise InputError(f"output '{args.out}' has no known extension", "end it in .safetensors, .pth or .pt")
    for key in EVERYTHING_KEYS:  # the rule `everything` applies to its options
        if getattr(args, key) is not None:
            check_everything_setting(key, getattr(args, key), f"--{key.replace('_', '-')}")
    with warnings_as_lines():  # e.g. invalid thresholds recorded in the input: dropped
        model = build_sam(args.model_type, checkpoint=args.checkpoint)
    if args.drop_thresholds:
        model.everything_defaults.clear()
    model.everything_defaults.update({k: getattr(args, k) for k in EVERYTHING_KEYS if getattr(args, k) is not None})
    path = save_checkpoint(model, args.out, getattr(torch, DTYPES[args.dtype]) if args.dtype != "fp32" else None)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {n / 1e6:.2f} M parameters, {args.dtype})")
    return 0
