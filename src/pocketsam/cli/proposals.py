"""``pocketsam train-proposals``: teach a SAM checkpoint to find objects itself.

    pocketsam train-proposals --checkpoint model.safetensors --data scenes/ --out runs/heads

The SAM model stays frozen; a small proposal head learns, from the ground-truth boxes of
SA-1B-layout folders, to propose boxes on the embedding SAM already computes. The exported
``OUT/model.safetensors`` is the same model with the head: ``pocketsam everything IMG
--mode boxes --checkpoint OUT/model.safetensors`` then needs no ``--boxes``.
"""

from __future__ import annotations

import argparse

from pocketsam.cli.common import add_engine_options, engine_config, report, resolve_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-proposals",
        help="train a built-in object-proposal head for 'everything --mode boxes' (SAM frozen)",
        description="Train a class-agnostic proposal head (CenterNet-style) on the image embedding of a frozen "
        "SAM model, from SA-1B-layout folders' boxes. The model's embeddings are cached once.",
    )
    p.add_argument("--checkpoint", metavar="CKPT", help="the SAM model to extend (default: the bundled model)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="SA-1B-layout folders (image + .json)")
    p.add_argument("--cache", metavar="DIR", help="embedding cache (default OUT/embedding_cache); shared with `pocketsam distill` caches of the same model")
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips (halves the cache)")
    p.add_argument("--hidden", type=int, default=64, help="head width (default 64)")
    p.add_argument("--upsample", type=int, default=2, help="2x upsamplings of the embedding grid (default 2: stride 4 px at 16-px cells)")
    p.add_argument("--score-thresh", type=float, default=0.1,
                   help="proposal score threshold recorded in the head for 'everything --mode boxes' (default 0.1)")
    add_engine_options(p, rounds_help="(unused by this command)")
    p.set_defaults(func=run, lr=2e-3, steps=1500, batch_size=16)


def run(args: argparse.Namespace) -> int:
    from pocketsam.errors import InputError
    from pocketsam.train.proposals import ProposalConfig, train_proposals

    if args.hidden < 1 or not 0 <= args.upsample <= 4 or not 0 <= args.score_thresh <= 1:
        raise InputError("--hidden must be >= 1, --upsample from 0 to 4 and --score-thresh from 0 to 1")
    init = str(resolve_checkpoint(args.checkpoint))
    cfg = engine_config(args, data=list(args.data), init=init)
    head = ProposalConfig(args.hidden, args.upsample, args.cache, not args.no_flip, args.score_thresh)
    report(train_proposals(cfg, head), args.out)
    return 0
