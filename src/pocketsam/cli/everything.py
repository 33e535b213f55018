"""``pocketsam everything``: segment everything in an image or a folder of images.

Example::

    pocketsam everything photos/ --checkpoint mobile_sam.pt --mode grid --out out/
    pocketsam everything street.jpg --mode boxes --boxes detections.json --out out/

Modes: ``grid`` (segment_anything's point grid), ``hierarchical`` (TinySAM's
sparse-then-dense grid), ``boxes`` (MobileSAMv2-style, one box prompt per detection in
a COCO detections JSON; a folder's images are matched to detections by file name via
the file's ``images`` list, or by numeric file stem = ``image_id``).

This command is a thin layer over :mod:`pocketsam.everything.results`, which owns the
output layout, provenance, resume and the COCO file (Python code gets the same).

For each image writes ``<out>/<name>/annotations.json`` (SA-1B style: ``{"image":
{file_name, height, width, sha256}, "provenance": {...}, "annotations": [{id,
segmentation (COCO RLE), area, bbox, predicted_iou, point_coords, stability_score,
crop_box}], "stats": ...}``) and ``<out>/<name>/overlay.png``. ``<name>`` is the image's
stem, made unique within the folder when stems collide (see
:func:`~pocketsam.everything.results.output_names`); ``file_name`` records which image the
folder belongs to. The two files are replaced together (never one without the other);
an image is done when both are there and ``annotations.json`` records its file name (a
deleted ``overlay.png`` is made again). An image that fails (unreadable, or a result
that cannot be written) is named in the summary and the others go on.

Resume is honest. ``provenance`` records what made the result
(:func:`~pocketsam.everything.results.provenance`): the
pocketsam version, the checkpoint's SHA-256 (the bundled model's file too), the model
type, the mode, every setting that changes the masks (thresholds as applied, including
those a checkpoint recommended) and the proposals (the image's own detections, by
SHA-256, or the checkpoint's proposal head). Re-running:

* a result with the same provenance, of the same image bytes, is skipped;
* a result of an image whose bytes changed is recomputed (it describes a picture that
  no longer exists);
* a result made with a different provenance (another checkpoint, mode or threshold, or
  an older pocketsam that recorded none) is never silently kept or replaced: the run
  stops with one error naming the differences, before the model is loaded; pass
  ``--overwrite`` to replace such results, or choose another ``--out``; results whose
  image fails under ``--overwrite`` are named as not replaced.

``--force`` recomputes every image. Everything checkable without the model is checked
before the model is loaded.

One run per output folder at a time: a second run on the same ``--out`` stops with one
"in use" error (an OS lock on ``<out>/.pocketsam.lock``, released however the holder
ends; SIGTERM and Ctrl-C remove it and any staging folder before the process exits).
A run first removes the hidden temporaries a killed run left (``.NAME.<hex>.tmp``,
:func:`pocketsam.io.remove_stale_temporaries`).

The work per image is bounded up front (:mod:`pocketsam.everything.limits`:
``--points-per-side`` ≤ 1024, ``--crop-n-layers`` ≤ 4, 2²⁰ prompts over all crops);
crops of less than one pixel (deep crop layers on a tiny image) are skipped.

``--format coco`` also writes ``<out>/instances.json``: one COCO instances file for all
the images (images, annotations with compressed-RLE segmentation, bbox, area, score,
category_id; see :mod:`pocketsam.everything.coco`), rebuilt from the per-image results
after every run. Image ids come from the detections file, else from numeric file stems,
else 1..N.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketsam.cli.common import (
    add_speed_argument,
    add_threshold_args,
    check_device,
    check_output_dir,
    check_thresholds,
    option_name,
    prompt_progress,
    resolve_checkpoint,
    say_bundled,
    say_speed,
    threshold_settings,
    warnings_as_lines,
)
from pocketsam.errors import InputError
from pocketsam.everything.limits import check_batch_size, check_everything_work
from pocketsam.everything.modes import COCO_FILE, MODES, check_proposals, make_generator

if TYPE_CHECKING:  # the results module loads torch: imported when a command runs (parsers stay light)
    from pocketsam.everything.results import EverythingRun, ResumePlan

from pocketsam.thresholds import MOBILESAMV2_SCORE_THRESH

FORMATS = ("sa1b", "coco")


def register(subparsers: Any) -> None:
    """Add the ``everything`` sub-command."""
    p = subparsers.add_parser(
        "everything",
        help="segment everything in an image or a folder (grid, hierarchical or box prompts)",
        description="Automatic mask generation; writes SA-1B-style annotations.json and overlay.png per image.",
    )
    p.add_argument("input", metavar="IMAGE_OR_DIR", help="an image, or a folder of images (not recursive)")
    p.add_argument("--checkpoint", "-c", default=None,
                   help="SAM / MobileSAM / TinySAM checkpoint, downloaded official weights' name (mobile_sam ...), "
                   "or bundled (the default: pocketsam's small model, trained on synthetic scenes)")
    p.add_argument("--model-type", default=None, help="force an architecture (vit_h, vit_l, vit_b, vit_t, ...)")
    p.add_argument("--mode", choices=MODES, default="grid", help="prompting strategy (default grid)")
    p.add_argument("--boxes", default=None, metavar="DETECTIONS.json", help="COCO detections JSON (mode boxes; default: the checkpoint's proposal head)")
    p.add_argument("--points-per-side", type=int, default=32, metavar="N", help="grid points per side (default 32)")
    p.add_argument("--points-per-batch", type=int, default=64, metavar="N", help="prompts decoded together (default 64)")
    add_threshold_args(p)
    p.add_argument("--box-nms-thresh", type=float, default=0.7, help="box NMS IoU threshold (default 0.7)")
    p.add_argument("--min-mask-region-area", type=int, default=0, help="remove holes/islands smaller than this (px)")
    p.add_argument("--crop-n-layers", type=int, default=0, help="extra crop layers (grid modes; default 0)")
    p.add_argument("--box-score-thresh", type=float, default=None,
                   help="boxes: minimum proposal score (default: the proposal head's recommendation, else 0.4)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--format", choices=FORMATS, default="sa1b",
                   help="sa1b: per-image annotations.json only (default); coco: also one COCO instances file "
                   f"for all the images, <out>/{COCO_FILE}")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_speed_argument(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace results made with another checkpoint, mode or settings (default: refuse)")
    p.add_argument("--force", action="store_true", help="recompute every image, even finished ones")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bars (prompts decoded within an image; images of a folder)")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse images larger than N pixels (default about 179 million); in a folder such an "
                   "image is reported as failed and the others go on")
    p.set_defaults(func=run)


def list_images(path: Path) -> list[Path]:
    """The image files to process: ``path`` itself, or the images in folder ``path``."""
    if not path.exists():
        raise InputError(f"input '{path}' does not exist", "check the path")
    if path.is_dir():
        from pocketsam.io import IMAGE_SUFFIXES
        from pocketsam.io import list_images as images_in

        files = images_in(path)
        if not files:
            raise InputError(f"folder '{path}' has no images", f"supported: {', '.join(sorted(IMAGE_SUFFIXES))}")
        return files
    return [path]


def generator_settings(args: argparse.Namespace, checkpoint: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """The generator's keyword arguments for these options and this checkpoint, read
    without building the model (:func:`pocketsam.checkpoints.read_metadata`): options
    given, else the checkpoint's recommendations (:func:`pocketsam.everything.modes.with_recommendations`).

    Returns:
        (kwargs, from_model) — ``from_model``: the settings taken from the checkpoint.
    """
    from pocketsam.checkpoints import read_metadata
    from pocketsam.errors import CheckpointWarning
    from pocketsam.everything.modes import with_recommendations
    from pocketsam.runtime.load import float_weights_file
    from pocketsam.thresholds import everything_defaults

    settings: dict[str, Any] = {
        "box_nms_thresh": args.box_nms_thresh,
        "min_mask_region_area": args.min_mask_region_area,
        "output_mode": "coco_rle",
        **threshold_settings(args),
    }
    if args.mode == "boxes":
        # recorded as applied: detections use MobileSAMv2's 0.4 unless told; the head's own threshold
        # travels in the checkpoint (hashed into the provenance)
        settings["score_thresh"] = (MOBILESAMV2_SCORE_THRESH if args.box_score_thresh is None and args.boxes
                                    else args.box_score_thresh)
    else:
        settings.update(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                        crop_n_layers=args.crop_n_layers)
    with warnings.catch_warnings():  # a bad recorded value is reported when the model loads
        warnings.simplefilter("ignore", CheckpointWarning)
        recommended = everything_defaults(read_metadata(float_weights_file(checkpoint)), f"checkpoint '{checkpoint}'")
    return with_recommendations(args.mode, recommended, **settings)


def validate(args: argparse.Namespace) -> dict[str, Any]:
    """Check arguments and inputs; returns what :func:`run` needs. No model involved."""
    from pocketsam.everything.results import EverythingRun, detections_digest, output_names, provenance
    from pocketsam.io import sha256_file

    if args.points_per_side < 1:
        raise InputError(f"--points-per-side must be >= 1, got {args.points_per_side}")
    check_batch_size(args.points_per_batch, cli=True)
    if args.max_pixels is not None and args.max_pixels <= 0:
        raise InputError(f"--max-pixels must be positive, got {args.max_pixels}")
    if args.min_mask_region_area < 0 or args.crop_n_layers < 0:
        raise InputError("--min-mask-region-area and --crop-n-layers must be >= 0")
    if args.mode != "boxes":  # the work per image, bounded before anything runs
        check_everything_work(args.points_per_side, args.crop_n_layers, cli=True)
    check_thresholds(args)
    if not 0.0 <= args.box_nms_thresh <= 1.0:
        raise InputError(f"--box-nms-thresh must be in [0, 1], got {args.box_nms_thresh}")
    detections = None
    if args.mode == "boxes" and args.boxes:
        from pocketsam.proposals.sources import CocoDetections

        detections = CocoDetections(args.boxes)
    elif args.boxes:
        raise InputError("--boxes is only used with --mode boxes")
    files = list_images(Path(args.input))
    if detections is not None:
        from pocketsam.proposals.sources import check_matched

        what = f"folder '{args.input}'" if len(files) > 1 or Path(args.input).is_dir() else f"image '{files[0].name}'"
        with warnings_as_lines():
            check_matched(detections.by_image, {detections.image_key(f.name) for f in files}, f"'{args.boxes}'", what)
    names = output_names(files)  # before the output folder is touched: a clash is an input error
    out = check_output_dir(args.out)
    checkpoint = resolve_checkpoint(args.checkpoint)
    device = check_device(args.device)
    if args.mode == "boxes" and detections is None:
        from pocketsam.checkpoints import has_proposal_head
        from pocketsam.runtime.load import float_weights_file

        check_proposals(args.mode, False, has_proposal_head(float_weights_file(checkpoint)))
    kwargs, from_model = generator_settings(args, checkpoint)
    from pocketsam.runtime.load import identity_file

    base = provenance(checkpoint, sha256_file(identity_file(checkpoint)), args.mode, kwargs, args.model_type)

    def provenance_of(file: Path) -> dict[str, Any]:
        if args.mode != "boxes":
            return base
        source = detections_digest(detections, file) if detections is not None else {"source": "proposal head"}
        return {**base, "proposals": source}

    return {
        "run": EverythingRun(out, files, provenance_of, names, detections),
        "checkpoint": checkpoint,
        "device": device,
        "generator_kwargs": kwargs,
        "from_model": from_model,
    }


def say_recommended(from_model: dict[str, float]) -> None:
    """One line naming the thresholds that came from the checkpoint, if any."""
    if from_model:
        given = ", ".join(f"{option_name(k)} {v:g}" for k, v in from_model.items())
        print(f"thresholds recommended by the checkpoint: {given} (pass the options to override)")




def write_coco(args: argparse.Namespace, run: EverythingRun) -> str:
    """Write ``<out>/instances.json`` from the images' current results
    (:meth:`EverythingRun.write_coco`: an image that failed this time, or whose result was
    made differently, is left out). Returns the summary line."""
    from pocketsam.everything.results import proposals_kind

    files = run.files
    info = {"description": f"pocketsam everything --mode {args.mode}",
            "provenance": {**run.provenance_of(files[0]), "proposals": proposals_kind(args.mode, run.detections)}}
    path, doc, missing = run.write_coco(info)
    line = f"wrote {path}: {len(doc['images'])} image(s), {len(doc['annotations'])} annotation(s)"
    return line + (f" ({len(missing)} image(s) without a current result left out)" if missing else "")


def run(args: argparse.Namespace) -> int:
    """One run per output folder at a time (:func:`pocketsam.io.folder_lock`; a second is
    refused as "in use"); what a killed run left half-written is removed first. SIGTERM
    ends the run as Ctrl-C does, so the lock and any staging are cleaned up."""
    from pocketsam.io import folder_lock, remove_stale_temporaries, terminate_as_interrupt

    ctx = validate(args)
    with terminate_as_interrupt(), folder_lock(ctx["run"].out, "`pocketsam everything` run"):
        remove_stale_temporaries(ctx["run"].out, depth=1)
        return _run(args, ctx)


def _say_plan(plan: ResumePlan) -> None:
    """What resume found that the user should know before the run (incomplete results)."""
    for name, missing in plan.incomplete[:5]:
        print(f"recomputing {name}: its result is without its {', '.join(missing)}")
    if len(plan.incomplete) > 5:
        print(f"recomputing {len(plan.incomplete) - 5} more incomplete result(s)")


def _run(args: argparse.Namespace, ctx: dict[str, Any]) -> int:
    everything: EverythingRun = ctx["run"]
    files, out = everything.files, everything.out
    plan = everything.plan(force=args.force, overwrite=args.overwrite)
    if not plan.todo:
        print(f"all {len(files)} image(s) already done in '{out}' (use --force to recompute)")
        if args.format == "coco":
            print(write_coco(args, everything))
        return 0
    _say_plan(plan)

    import torch
    from tqdm import tqdm

    from pocketsam import build_sam
    from pocketsam.errors import PocketSamError
    from pocketsam.io import DEFAULT_MAX_PIXELS, load_image, sha256_file

    say_bundled(ctx["checkpoint"])
    with warnings_as_lines():
        sam = build_sam(model_type=args.model_type, checkpoint=ctx["checkpoint"], device=ctx["device"])
    if args.mode == "boxes" and not args.boxes:
        print("proposals: the checkpoint's own proposal head (pass --boxes FILE to use a detector's)")
    say_recommended(ctx["from_model"])
    generator = make_generator(args.mode, sam, **ctx["generator_kwargs"], speed=args.speed)
    say_speed(generator.predictor)
    failures: list[str] = []
    t0 = time.perf_counter()
    bar = tqdm(plan.todo, desc="everything", unit="img", disable=len(files) == 1 or args.quiet)
    for file, dest in bar:
        bar.set_postfix_str(file.name)
        try:
            digest = sha256_file(file)
            image = load_image(file, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
            with torch.inference_mode(), warnings_as_lines(), prompt_progress(generator, file.name, args.quiet):
                records = generator.generate(image, proposals=everything.detections.proposals(file.name)) \
                    if everything.detections is not None else generator.generate(image)
            doc = everything.write(file, image, records, generator.last_stats, digest)
        except Exception as exc:  # noqa: BLE001 — one image's failure is reported; the others go on
            everything.fail(file)
            if len(files) == 1 and isinstance(exc, PocketSamError):
                raise
            if len(files) == 1:
                raise PocketSamError(f"segmenting '{file.name}' failed: {type(exc).__name__}: {exc}",
                                     "please report this with the image") from exc
            failures.append(f"{file.name}: {exc if isinstance(exc, PocketSamError) else f'{type(exc).__name__}: {exc}'}")
            continue
        if len(files) == 1:
            print(f"{len(doc['annotations'])} masks for {file.name} in {time.perf_counter() - t0:.1f}s -> {dest}")
    replaced = [n for n in plan.stale if n not in everything.failed]
    kept = [n for n in plan.stale if n in everything.failed]
    if replaced:
        print(f"replaced {len(replaced)} result(s) made with other settings (--overwrite)")
    if kept:
        shown = ", ".join(kept[:5]) + (", …" if len(kept) > 5 else "")
        print(f"{len(kept)} result(s) made with other settings not replaced (their image failed): {shown}")
    changed = [n for n in plan.changed if n not in everything.failed]
    if changed:
        print(f"recomputed {len(changed)} image(s) whose file changed since its result was made")
    if len(files) > 1:
        print(f"{len(plan.todo) - len(failures)} image(s) segmented, {plan.done} already done, "
              f"{len(failures)} failed -> {out}")
        for line in failures:
            print(f"  failed: {line}")
    if args.format == "coco":
        print(write_coco(args, everything))
    return 1 if failures else 0
