"""``pocketsam`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed ``argparse.Namespace`` and returning an exit code. Modules import heavy
dependencies (torch) inside their ``func`` so that ``pocketsam --help`` stays instant.

Every :class:`~pocketsam.errors.PocketSamError` becomes one ``error: ...`` line on stderr
and exit status 2; Ctrl-C exits with 130. No traceback reaches the user unless
``POCKETSAM_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from pocketsam.errors import PocketSamError

# Sub-command modules, in the order `pocketsam --help` lists them.
COMMANDS = ("segment", "everything", "download", "data", "eval", "train", "distill", "proposals", "export", "quantize", "serve", "bench")


def build_parser() -> argparse.ArgumentParser:
    from pocketsam.version import __version__

    parser = argparse.ArgumentParser(
        prog="pocketsam",
        description="Efficient Segment Anything: SAM, MobileSAM, TinySAM, MobileSAMv2.",
    )
    parser.add_argument("--version", action="version", version=f"pocketsam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"pocketsam.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PocketSamError as exc:
        if os.environ.get("POCKETSAM_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
