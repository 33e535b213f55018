"""``pocketsam download NAME [--dir DIR]``: fetch official weights by name.

Example::

    pocketsam download mobile_sam            # into the weights folder (~/.cache/pocketsam/weights)
    pocketsam segment photo.jpg --checkpoint mobile_sam --point 500,375 --out out/
    pocketsam download --list                # names, sizes, sources

See :mod:`pocketsam.weights`: verified against the published SHA-256, resumable,
written atomically. This is the only command that downloads anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``download`` sub-command."""
    from pocketsam.weights import KNOWN_WEIGHTS, WEIGHTS_ENV

    p = subparsers.add_parser(
        "download",
        help="download official weights by name (sam_vit_h/l/b, mobile_sam, tinysam)",
        description="Download official SAM / MobileSAM / TinySAM weights, verify their SHA-256 and keep them "
        f"in the weights folder (${WEIGHTS_ENV}, else ~/.cache/pocketsam/weights), where --checkpoint NAME "
        "finds them. An interrupted download resumes when the command is run again.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help=f"one of {', '.join(KNOWN_WEIGHTS)}")
    p.add_argument("--dir", default=None, metavar="DIR", help="download into DIR instead of the weights folder")
    p.add_argument("--list", action="store_true", help="list the known weights and whether they are downloaded")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up when the server sends nothing for S seconds (default 60; the download resumes later)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pocketsam.errors import InputError
    from pocketsam.weights import KNOWN_WEIGHTS, WEIGHTS_ENV, download, lookup, record_path, weights_dir

    folder = Path(args.dir).expanduser() if args.dir else weights_dir()
    if args.list:
        for w in KNOWN_WEIGHTS.values():
            size = f"{w.size / 1e6:,.0f} MB" if w.size else "size unknown"
            state = "downloaded" if (folder / w.file_name).is_file() else "not downloaded"
            print(f"{w.name:<11} {size:>10}  {state:<14}  {w.use}")
        print(f"weights folder: {folder}")
        return 0
    if args.name is None:
        raise InputError("no weights named", f"give one of {', '.join(KNOWN_WEIGHTS)} (or --list)")
    w = lookup(args.name)
    if w is None:
        raise InputError(f"no official weights are called '{args.name}'", f"use one of {', '.join(KNOWN_WEIGHTS)}")
    if not (0 < args.timeout <= 3600):
        raise InputError(f"--timeout must be above 0 and at most 3600 seconds, got {args.timeout:g}")
    already = (folder / w.file_name).is_file()
    recorded = record_path(folder / w.file_name).is_file()
    path = download(w.name, folder, progress=not args.quiet, timeout=args.timeout)
    if w.sha256 is not None:
        checked = ", SHA-256 verified"
    else:
        checked = ", same size and SHA-256 as when it was downloaded" if already and recorded else ""
    print(f"{w.name}: {'already in' if already else 'downloaded to'} {path}{checked}")
    if folder.resolve() == weights_dir().resolve():
        print(f"use it with --checkpoint {w.name} (Python: build_sam(checkpoint=\"{w.name}\"))")
    else:
        print(f"use it with --checkpoint {path}, or set {WEIGHTS_ENV}={folder} to use --checkpoint {w.name}")
    return 0
