"""``pocketsam export``: rewrite any SAM-family checkpoint in the official layout, as
safetensors or a plain state_dict, optionally in half precision, optionally recording the
thresholds "segment everything" should use with it (``--pred-iou-thresh`` ...); or, with
``--format onnx``, write a folder with ``encoder.onnx``, ``encoder_rgb.onnx`` and
``decoder.onnx`` in Segment Anything's ONNX interface plus ``config.json``
(:mod:`pocketsam.export.onnx_sam`)."""

from __future__ import annotations

import argparse

from pocketsam.cli.common import check_output_dir, check_threshold_values, option_name, warnings_as_lines
from pocketsam.thresholds import EVERYTHING_KEYS  # torch-free: the parser is built without torch

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
FORMATS = ("safetensors", "pth", "onnx")
ONNX_PARTS = ("decoder", "encoder", "encoder_rgb", "encoder_int8")
DEFAULT_ONNX_PARTS = ("decoder", "encoder", "encoder_rgb")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="convert a checkpoint to safetensors or .pth (optionally fp16), or to SAM-interface ONNX files",
        description="Load a checkpoint (architecture detected from the file), then write it in the "
        "official layout with the metadata that makes its configuration recoverable (a .safetensors "
        "output never needs pickle to load); or, with --format onnx, write a folder with encoder.onnx "
        "(preprocessed 1x3xSxS image -> embedding), encoder_rgb.onnx (HxWx3 uint8 RGB image -> "
        "embedding), decoder.onnx (Segment Anything's ONNX decoder interface) and config.json.",
    )
    p.add_argument("checkpoint", nargs="?", default="bundled",
                   help="input checkpoint: a path, official weights' name (mobile_sam ...) or bundled (the default)")
    p.add_argument("--out", "-o", required=True,
                   help="output file: .safetensors, or .pth/.pt; with --format onnx a directory")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="output format (default: from --out's extension)")
    p.add_argument("--model-type", default=None, help="architecture name if it cannot be detected (e.g. tinysam)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                   help="precision of the stored weights (fp16 halves the file; loading gives float32)")
    g = p.add_argument_group(
        "recommended 'everything' thresholds",
        "stored in the file and used by `pocketsam everything` / `eval everything` when their options "
        "are left out (kept from the input checkpoint unless given)",
    )
    for key in EVERYTHING_KEYS:
        g.add_argument(option_name(key), type=float, default=None, metavar="X")
    g.add_argument("--drop-thresholds", action="store_true", help="store no recommendation (before the options above)")
    p.add_argument("--drop-proposal-head", action="store_true",
                   help="leave out the checkpoint's proposal head (an official-architecture .pth never carries it)")
    o = p.add_argument_group("ONNX (--format onnx)")
    o.add_argument("--parts", default=",".join(DEFAULT_ONNX_PARTS), metavar="LIST",
                   help=f"comma-separated files to write, of {','.join(ONNX_PARTS)} "
                   f"(default {','.join(DEFAULT_ONNX_PARTS)})")
    o.add_argument("--int8", action="store_true",
                   help="also write encoder_int8.onnx, pocketsam.quant's static int8 encoder (ONNX Runtime): the "
                   "checkpoint's own if it is an int8 artifact, else calibrated on --calib or on synthetic scenes")
    o.add_argument("--calib", default=None, metavar="DIR", help="calibration images for --int8")
    o.add_argument("--calib-images", type=int, default=8, metavar="N", help="use the first N images of --calib (8)")
    o.add_argument("--all-masks", action="store_true",
                   help="decoder returns all 4 masks (SAM's return_single_mask=False) instead of the best one")
    p.set_defaults(func=run)


def _check_output_file(out: str) -> None:
    """``--out`` can be written as a file: not a folder, and its nearest existing folder is a
    writable folder (missing folders are created), not a file (``afile/x.safetensors``).

    Raises:
        InputError: one line naming what is in the way.
    """
    import os
    from pathlib import Path

    from pocketsam.errors import InputError

    path = Path(out)
    if path.is_dir():
        raise InputError(f"--out '{out}' is a folder", "give a file name ending in .safetensors, .pth or .pt")
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write --out '{out}': '{ancestor}' is a file, not a folder", "choose another --out")
    if not os.access(ancestor, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write --out '{out}': '{ancestor}' is not writable", "choose another --out")


def run(args: argparse.Namespace) -> int:
    import torch

    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.errors import InputError
    from pocketsam.runtime.load import build_sam

    fmt = args.format
    if fmt == "onnx":
        parts = _onnx_parts(args.parts)
        if args.dtype != "fp32":
            raise InputError(f"--dtype {args.dtype} is not available for ONNX exports", "leave --dtype out (float32)")
        _require_onnx()
        if args.int8 and "encoder_int8" not in parts:
            parts.append("encoder_int8")
        if args.calib is not None and "encoder_int8" not in parts:
            raise InputError("--calib is for the int8 encoder", "add --int8")
        if args.calib is not None:  # checked and loaded before the model
            from pocketsam.quant import calibration_images

            args.calib_loaded, _ = calibration_images(args.calib, args.calib_images)
        check_output_dir(args.out)  # before the model loads
    elif not str(args.out).endswith((".safetensors", ".pth", ".pt")):
        raise InputError(f"output '{args.out}' has no known extension",
                         "end it in .safetensors, .pth or .pt, or pass --format onnx for an ONNX folder")
    elif fmt is not None and (fmt == "safetensors") != str(args.out).endswith(".safetensors"):
        raise InputError(f"--format {fmt} does not match the output name '{args.out}'",
                         "end it in .safetensors for safetensors, .pth/.pt for pth")
    else:
        _check_output_file(args.out)  # before the model loads
    check_threshold_values(args)  # the rule `everything` applies to its options
    with warnings_as_lines():  # e.g. invalid thresholds recorded in the input: dropped
        # the bundled model when none is named: never random weights (build_sam with only a model type)
        model = build_sam(args.model_type, checkpoint=args.checkpoint or "bundled")
    if args.drop_thresholds:
        model.everything_defaults.clear()
    if args.drop_proposal_head:
        model.proposal_head = None
    model.everything_defaults.update({k: getattr(args, k) for k in EVERYTHING_KEYS if getattr(args, k) is not None})
    if fmt == "onnx":
        return _run_onnx(model, args, parts)
    with warnings_as_lines():  # e.g. an official architecture's .pth leaves the thresholds out
        path = save_checkpoint(model, args.out, getattr(torch, DTYPES[args.dtype]) if args.dtype != "fp32" else None)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {n / 1e6:.2f} M parameters, {args.dtype})")
    return 0


def _onnx_parts(text: str) -> list[str]:
    from pocketsam.errors import InputError

    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in ONNX_PARTS]
    if bad or not parts:
        raise InputError(f"--parts '{text}' names unknown files ({', '.join(bad) or 'none given'})",
                         f"choose from {','.join(ONNX_PARTS)}")
    return list(dict.fromkeys(parts))


def _require_onnx() -> None:
    import importlib.util

    from pocketsam.errors import InputError

    if importlib.util.find_spec("onnx") is None:
        raise InputError("--format onnx needs the onnx package", "pip install 'pocketsam[onnx]'")


def _run_onnx(model, args: argparse.Namespace, parts: list[str]) -> int:
    import time

    from pocketsam.export.onnx_sam import export_sam_onnx

    images = getattr(args, "calib_loaded", None)
    start = time.perf_counter()
    config = export_sam_onnx(model, args.out, parts, return_single_mask=not args.all_masks, source=str(args.checkpoint),
                             calib_images=images, log=lambda m: print(m, flush=True))
    files = ", ".join(f"{f['file']} ({f['bytes'] / 2**20:.1f} MiB)" for f in config["files"].values())
    print(f"wrote {args.out}/: {files}, config.json ({config['model_type']}, input {config['input_size']}, "
          f"opset {config['opset']}, {time.perf_counter() - start:.1f} s)")
    return 0
