"""``pocketsam eval``: measure a model.

* ``pocketsam eval prompts --data DIR --prompt point|box [--against TEACHER]`` —
  single-prompt mIoU on SA-1B layout data (or COCO with ``--annotations``); with
  ``--against``, also the mIoU of the model's masks with the teacher's.
* ``pocketsam eval coco --images DIR --annotations instances.json --detections results.json``
  — COCO mask AP of detector boxes used as box prompts.
* ``pocketsam eval everything --data DIR --mode grid|hierarchical|boxes`` — mask AR@100 /
  AR@1000 of automatic mask generation.

Each prints a table, shows progress on stderr and, with ``--output FILE``, writes the
numbers as JSON (atomically). The protocols are described in :mod:`pocketsam.eval.runners`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pocketsam.cli.common import (
    add_threshold_args,
    check_output_file,
    check_thresholds,
    threshold_settings,
    warnings_as_lines,
)
from pocketsam.errors import InputError
from pocketsam.thresholds import EVERYTHING_KEYS
from pocketsam.everything.modes import MODES, check_proposals, make_generator


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the bundled model)")
    p.add_argument("--model-type", default=None, help="vit_t, vit_b, ... (default: detected from the checkpoint)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--max-images", type=int, default=None, metavar="N", help="evaluate only the first N images")
    p.add_argument("--output", default=None, metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model (prompted mIoU, COCO mask AP, everything AR)")
    sub = parser.add_subparsers(dest="eval_command", metavar="BENCHMARK")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    p = sub.add_parser("prompts", help="mIoU from one point or one box per ground-truth mask",
                       description="Single-prompt mIoU. point: one click at the pixel farthest from the mask "
                       "boundary, best of 3 masks by predicted IoU. box: the mask's tight box, one mask.")
    p.add_argument("--data", required=True, help="SA-1B layout directory (or COCO image directory with --annotations)")
    p.add_argument("--annotations", default=None, help="COCO instances JSON (then --data holds its images)")
    p.add_argument("--prompt", choices=("point", "box"), default="point", help="prompt type (default point)")
    p.add_argument("--max-masks-per-image", type=int, default=None, metavar="N", help="use at most N masks per image")
    p.add_argument("--against", default=None, metavar="TEACHER_CKPT",
                   help="also report miou_vs_teacher: mIoU between this model's masks and this checkpoint's for the "
                   "same prompts (same mask choice; any input size)")
    _common(p)
    p.set_defaults(func=_run_prompts)

    c = sub.add_parser("coco", help="COCO mask AP with detector boxes as prompts",
                       description="Each detector box becomes a box prompt (one mask); the detection score is "
                       "the mask score; masks are scored with pycocotools COCOeval (segm).")
    c.add_argument("--images", required=True, help="COCO image directory")
    c.add_argument("--annotations", required=True, help="COCO instances JSON (ground truth)")
    c.add_argument("--detections", required=True, help="COCO results JSON with boxes (image_id, category_id, bbox, score)")
    c.add_argument("--max-detections", type=int, default=100, metavar="N", help="best N detections per image (default 100)")
    _common(c)
    c.set_defaults(func=_run_coco)

    e = sub.add_parser("everything", help="mask AR@100/AR@1000 of automatic mask generation")
    e.add_argument("--data", required=True, help="SA-1B layout directory")
    e.add_argument("--mode", choices=MODES, default="grid",
                   help="grid: SamAutomaticMaskGenerator; hierarchical: SamHierarchicalMaskGenerator; "
                   "boxes: ObjectAwareMaskGenerator fed with --boxes, else with the checkpoint's proposal head")
    e.add_argument("--boxes", default=None, help="COCO results JSON of box proposals (mode boxes)")
    e.add_argument("--points-per-side", type=int, default=None, help="prompt grid density (grid/hierarchical)")
    add_threshold_args(e)
    _common(e)
    e.set_defaults(func=_run_everything)


# ---------------------------------------------------------------------------- output


def print_table(title: str, results: dict[str, Any]) -> None:
    """Print ``results`` as a two-column table."""
    rows = [(k, _fmt(v)) for k, v in results.items()]
    width = max([len(k) for k, _ in rows] + [len(title)])
    vwidth = max([len(v) for _, v in rows] + [5])
    line = "-" * (width + vwidth + 3)
    print(title)
    print(line)
    for k, v in rows:
        print(f"{k:<{width}}   {v:>{vwidth}}")
    print(line)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _finish(title: str, results: dict[str, Any], output: str | None) -> int:
    print_table(title, results)
    if output:
        from pocketsam.io import write_json_atomic

        out = Path(output)
        write_json_atomic(results, out)
        print(f"wrote {out}")
    return 0


def _model(args: argparse.Namespace):
    from pocketsam.eval.runners import load_model

    with warnings_as_lines():
        return load_model(args.checkpoint, args.model_type, args.device)


def _check_common(args: argparse.Namespace) -> None:
    """The options every benchmark shares, before any work: --max-images and --output."""
    if args.max_images is not None and args.max_images < 1:
        raise InputError(f"--max-images must be >= 1, got {args.max_images}")
    if args.output is not None:
        check_output_file(args.output, "--output")


# ---------------------------------------------------------------------------- commands


def _run_prompts(args: argparse.Namespace) -> int:
    from pocketsam.data import CocoReader, SA1BReader
    from pocketsam.eval.runners import eval_prompts

    _check_common(args)
    if args.max_masks_per_image is not None and args.max_masks_per_image < 1:
        raise InputError(f"--max-masks-per-image must be >= 1, got {args.max_masks_per_image}")
    samples = CocoReader(args.annotations, args.data) if args.annotations else SA1BReader(args.data)
    if args.against is not None:  # before any model is loaded; official weights may be named
        from pocketsam.weights import resolve_checkpoint_name

        args.against = str(resolve_checkpoint_name(args.against))
        if not Path(args.against).is_file():
            raise InputError(f"teacher checkpoint '{args.against}' does not exist or is not a file", "check the --against path")
    sam = _model(args)
    teacher = None
    if args.against is not None:
        from pocketsam.eval.runners import load_model

        with warnings_as_lines():
            teacher = load_model(args.against, None, args.device)
    results = eval_prompts(sam, samples, prompt=args.prompt, max_images=args.max_images,
                           max_masks_per_image=args.max_masks_per_image, progress=not args.quiet, teacher=teacher)
    return _finish(f"single-{args.prompt} mIoU on {args.data}", results, args.output)


def _run_coco(args: argparse.Namespace) -> int:
    from pocketsam.data import CocoReader
    from pocketsam.eval.runners import eval_coco
    from pocketsam.proposals.sources import CocoDetections

    _check_common(args)
    if args.max_detections < 1:
        raise InputError(f"--max-detections must be >= 1, got {args.max_detections}")
    reader = CocoReader(args.annotations, args.images, include_crowd=False)
    gt = reader.dataset
    categories = {c.get("id") for c in gt["categories"] if isinstance(c, dict)} or {
        a.get("category_id", 1) for a in gt["annotations"]}  # a file without a category list: the ids it uses
    detections = CocoDetections(args.detections, categories=categories)
    known_images = {img["id"] for img in gt["images"]}
    for i, d in enumerate(detections.detections):
        if d.get("image_id") not in known_images:
            raise InputError(f"'{args.detections}': entry {i} refers to image {d.get('image_id', d.get('file_name'))!r}, "
                             "which the annotations do not have", "use the detections made for this annotation file")
    sam = _model(args)
    results = eval_coco(sam, reader, detections.detections, max_images=args.max_images,
                        max_detections_per_image=args.max_detections, progress=not args.quiet)
    return _finish(f"COCO mask AP ({args.annotations})", results, args.output)


def _run_everything(args: argparse.Namespace) -> int:
    from pocketsam.data import SA1BReader
    from pocketsam.eval.runners import eval_everything
    from pocketsam.proposals.sources import CocoDetections

    _check_common(args)
    if args.mode != "boxes" and args.boxes:
        raise InputError("--boxes is only used with --mode boxes")
    if args.points_per_side is not None and args.points_per_side < 1:
        raise InputError(f"--points-per-side must be >= 1, got {args.points_per_side}")
    samples = SA1BReader(args.data)
    check_thresholds(args)
    boxes = CocoDetections(args.boxes).boxes_by_image() if args.boxes else None
    sam = _model(args)
    check_proposals(args.mode, boxes is not None, sam.has_proposal_head)
    kwargs: dict[str, Any] = threshold_settings(args)
    if args.points_per_side is not None and args.mode != "boxes":
        kwargs["points_per_side"] = args.points_per_side
    generator = make_generator(args.mode, sam, **kwargs)
    with warnings_as_lines():  # proposals for none of the evaluated images
        results = eval_everything(generator, samples, max_images=args.max_images, boxes=boxes,
                                  progress=not args.quiet, desc=f"eval everything ({args.mode})",
                                  boxes_source=f"'{args.boxes}'")
    used = {k: getattr(generator, k) for k in EVERYTHING_KEYS if hasattr(generator, k)}
    results = {"mode": args.mode, **results, **used}
    return _finish(f"segment-everything AR ({args.mode}) on {args.data}", results, args.output)
