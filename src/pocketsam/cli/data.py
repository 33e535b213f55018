"""``pocketsam data``: the data engine.

``pocketsam data synth --out DIR --num-images N [--size H,W] [--seed S] [--style default|alt]``
writes synthetic scenes with exact ground truth in SA-1B layout (``<name>.jpg`` +
``<name>.json``).
"""

from __future__ import annotations

import argparse
import time

from pocketsam.errors import InputError


def _size(text: str) -> tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        if len(parts) == 1:
            h = w = int(parts[0])
        elif len(parts) == 2:
            h, w = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W (e.g. 512,512), got {text!r}") from None
    return h, w


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="generate training/evaluation data (synthetic scenes)",
                                   description="The data engine. One action so far: synth.")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    synth = sub.add_parser(
        "synth",
        help="generate synthetic scenes with exact masks (SA-1B layout)",
        description="Generate synthetic scenes (textured backgrounds, many shape kinds, occlusion, "
        "blur/noise/JPEG artefacts) with exact visible-part masks, in SA-1B layout. "
        "The same seed always gives byte-identical files.",
    )
    synth.add_argument("--out", required=True, help="output directory (created if missing)")
    synth.add_argument("--num-images", type=int, required=True, metavar="N", help="how many images")
    synth.add_argument("--size", type=_size, default=(512, 512), metavar="H,W", help="image size (default 512,512)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--style", choices=("default", "alt"), default="default",
                       help="'alt' draws another family of textures/shapes/sizes, for out-of-distribution checks")
    synth.add_argument("--start", type=int, default=0, help="index of the first image (to extend a dataset)")
    synth.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPUs)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from pocketsam.data.synth import generate_dataset

    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    if args.start < 0:
        raise InputError(f"--start must be >= 0, got {args.start}")
    t0 = time.perf_counter()
    n = generate_dataset(args.out, args.num_images, size=args.size, seed=args.seed, style=args.style,
                         workers=args.workers, start=args.start, progress=not args.quiet)
    dt = time.perf_counter() - t0
    rate = n / dt * 60 if dt > 0 else float("inf")
    print(f"wrote {n} images to {args.out} in {dt:.1f} s ({rate:.0f} images/min)")
    return 0
