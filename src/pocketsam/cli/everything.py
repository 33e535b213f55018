"""``pocketsam everything``: segment everything in an image or a folder of images.

Example::

    pocketsam everything photos/ --checkpoint mobile_sam.pt --mode grid --out out/
    pocketsam everything street.jpg --mode boxes --boxes detections.json --out out/

Modes: ``grid`` (segment_anything's point grid), ``hierarchical`` (TinySAM's
sparse-then-dense grid), ``boxes`` (MobileSAMv2-style, one box prompt per detection in
a COCO detections JSON; a folder's images are matched to detections by file name via
the file's ``images`` list, or by numeric file stem = ``image_id``).

For each image writes ``<out>/<name>/annotations.json`` (SA-1B style: ``{"image":
{file_name, height, width}, "annotations": [{id, segmentation (COCO RLE), area, bbox,
predicted_iou, point_coords, stability_score, crop_box}], "stats": ...}``) and
``<out>/<name>/overlay.png``. ``<name>`` is the image's stem, made unique within the
folder when stems collide (see :func:`output_names`); ``file_name`` records which image
the folder belongs to. Files are written atomically, annotations last, so an image whose
``annotations.json`` exists and records its file name is complete: re-running the same
command skips it (``--force`` recomputes). Everything checkable without the model is
checked before the model is loaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pocketsam.cli.segment import warnings_as_lines
from pocketsam.errors import InputError

MODES = ("grid", "hierarchical", "boxes")


def register(subparsers: Any) -> None:
    """Add the ``everything`` sub-command."""
    p = subparsers.add_parser(
        "everything",
        help="segment everything in an image or a folder (grid, hierarchical or box prompts)",
        description="Automatic mask generation; writes SA-1B-style annotations.json and overlay.png per image.",
    )
    p.add_argument("input", metavar="IMAGE_OR_DIR", help="an image, or a folder of images (not recursive)")
    p.add_argument("--checkpoint", "-c", default=None, help="SAM / MobileSAM / TinySAM checkpoint")
    p.add_argument("--model-type", default=None, help="force an architecture (vit_h, vit_l, vit_b, vit_t, ...)")
    p.add_argument("--mode", choices=MODES, default="grid", help="prompting strategy (default grid)")
    p.add_argument("--boxes", default=None, metavar="DETECTIONS.json", help="COCO detections JSON (mode boxes; default: the checkpoint's proposal head)")
    p.add_argument("--points-per-side", type=int, default=32, metavar="N", help="grid points per side (default 32)")
    p.add_argument("--points-per-batch", type=int, default=64, metavar="N", help="prompts decoded together (default 64)")
    add_threshold_args(p)
    p.add_argument("--box-nms-thresh", type=float, default=0.7, help="box NMS IoU threshold (default 0.7)")
    p.add_argument("--min-mask-region-area", type=int, default=0, help="remove holes/islands smaller than this (px)")
    p.add_argument("--crop-n-layers", type=int, default=0, help="extra crop layers (grid modes; default 0)")
    p.add_argument("--box-score-thresh", type=float, default=0.4, help="boxes: minimum detection score (default 0.4)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--force", action="store_true", help="recompute images that already have results")
    p.set_defaults(func=run)


def add_threshold_args(p: argparse.ArgumentParser) -> None:
    """The mask-filter options shared by ``everything`` and ``eval everything``. Left out,
    each comes from the checkpoint's recommendation (the bundled model has them), else
    from the generator's default."""
    p.add_argument("--pred-iou-thresh", type=float, default=None,
                   help="predicted-IoU filter (default: the checkpoint's recommendation, else 0.88; boxes 0)")
    p.add_argument("--stability-score-thresh", type=float, default=None,
                   help="stability filter (default: the checkpoint's recommendation, else 0.95; boxes 0)")
    p.add_argument("--high-score-thresh", type=float, default=None,
                   help="hierarchical: logit that counts as confident (default: the checkpoint's, else 8.5)")


def check_thresholds(args: argparse.Namespace) -> None:
    """Clear errors for invalid (:func:`pocketsam.checkpoints.check_everything_setting`,
    the rule ``export`` and checkpoints follow too) or misplaced filter options."""
    from pocketsam.checkpoints import EVERYTHING_KEYS, check_everything_setting

    for key in EVERYTHING_KEYS:
        if getattr(args, key) is not None:
            check_everything_setting(key, getattr(args, key), f"--{key.replace('_', '-')}")
    if args.high_score_thresh is not None and args.mode != "hierarchical":
        raise InputError("--high-score-thresh is only used with --mode hierarchical")


def threshold_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The filter options as generator keyword arguments (``None``: not given)."""
    out = {"pred_iou_thresh": args.pred_iou_thresh, "stability_score_thresh": args.stability_score_thresh}
    if args.mode == "hierarchical":
        out["high_score_thresh"] = args.high_score_thresh
    return out


def list_images(path: Path) -> list[Path]:
    """The image files to process: ``path`` itself, or the images in folder ``path``."""
    if not path.exists():
        raise InputError(f"input '{path}' does not exist", "check the path")
    if path.is_dir():
        from pocketsam.io import IMAGE_SUFFIXES, list_images as images_in

        files = images_in(path)
        if not files:
            raise InputError(f"folder '{path}' has no images", f"supported: {', '.join(sorted(IMAGE_SUFFIXES))}")
        return files
    return [path]


def output_names(files: list[Path]) -> list[str]:
    """One output folder name per image: unique (also on a case-insensitive file system)
    and a function of the folder's image names alone, so every run over the same folder
    gives the same names.

    * the stem (``photo.jpg`` → ``photo``);
    * ``stem_ext`` where stems collide (``a.jpg`` + ``a.png`` → ``a_jpg``, ``a_png``);
    * that name plus 8 hex digits of the SHA-1 of the exact file name where names still
      collide (``a.jpg`` + ``a.JPG``; or ``a_jpg.png`` beside ``a.jpg`` and ``a.png``).

    Raises:
        InputError: two names still collide (only for files named like another's hashed name).
    """

    def collide(names: list[str]) -> list[bool]:
        counts = Counter(n.casefold() for n in names)
        return [counts[n.casefold()] > 1 for n in names]

    names = [f.stem for f in files]
    names = [f"{f.stem}_{f.suffix[1:].lower()}" if c else n for n, f, c in zip(names, files, collide(names))]
    names = [f"{n}_{hashlib.sha1(os.fsencode(f.name)).hexdigest()[:8]}" if c else n
             for n, f, c in zip(names, files, collide(names))]
    clash = [f.name for f, c in zip(files, collide(names)) if c]
    if clash:
        raise InputError(f"cannot give the images {', '.join(clash)} distinct output folders", "rename one of them")
    return names


def recorded_file_name(annotations: Path) -> str | None:
    """The ``image.file_name`` an ``annotations.json`` records; None if it is unreadable.

    :func:`annotations_document` puts ``image`` first, so usually only the head of the
    file is parsed (a folder of large results resumes without reading them all).
    """
    try:
        with open(annotations, encoding="utf-8") as f:
            head = f.read(1 << 16)
            m = re.match(r'\s*\{\s*"image"\s*:\s*', head)
            try:
                image = json.JSONDecoder().raw_decode(head, m.end())[0] if m else None
            except json.JSONDecodeError:
                image = None
            if image is None:
                image = json.loads(head + f.read())["image"]
        name = image["file_name"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) else None


def is_done(file: Path, dest: Path) -> bool:
    """``dest`` holds this image's complete result: an ``annotations.json`` that records
    ``file``'s name (a result of another image with the same output name does not count)."""
    return recorded_file_name(dest / "annotations.json") == file.name


def validate(args: argparse.Namespace) -> dict[str, Any]:
    """Check arguments and inputs; returns what :func:`run` needs. No model involved."""
    from pocketsam.cli.segment import check_device, check_output_dir, resolve_checkpoint

    if args.points_per_side < 1:
        raise InputError(f"--points-per-side must be >= 1, got {args.points_per_side}")
    if args.points_per_batch < 1:
        raise InputError(f"--points-per-batch must be >= 1, got {args.points_per_batch}")
    if args.min_mask_region_area < 0 or args.crop_n_layers < 0:
        raise InputError("--min-mask-region-area and --crop-n-layers must be >= 0")
    check_thresholds(args)
    if not 0.0 <= args.box_nms_thresh <= 1.0:
        raise InputError(f"--box-nms-thresh must be in [0, 1], got {args.box_nms_thresh}")
    detections = None
    if args.mode == "boxes" and args.boxes:
        from pocketsam.everything.proposals import CocoDetections

        detections = CocoDetections(args.boxes)
    elif args.boxes:
        raise InputError("--boxes is only used with --mode boxes")
    files = list_images(Path(args.input))
    if detections is not None:
        from pocketsam.everything.proposals import check_matched

        what = f"folder '{args.input}'" if len(files) > 1 or Path(args.input).is_dir() else f"image '{files[0].name}'"
        with warnings_as_lines():
            check_matched(detections.by_image, {detections.image_key(f.name) for f in files}, f"'{args.boxes}'", what)
    return {
        "files": files,
        "names": output_names(files),
        "out": check_output_dir(args.out),
        "checkpoint": resolve_checkpoint(args.checkpoint),
        "device": check_device(args.device),
        "detections": detections,
    }


def make_generator(args: argparse.Namespace, sam: Any) -> Any:
    """The generator the options ask for; says which thresholds came from the checkpoint."""
    from pocketsam.everything import GENERATORS, resolve_settings

    settings: dict[str, Any] = {
        "box_nms_thresh": args.box_nms_thresh,
        "min_mask_region_area": args.min_mask_region_area,
        "output_mode": "coco_rle",
        **threshold_settings(args),
    }
    if args.mode == "boxes":
        settings["score_thresh"] = args.box_score_thresh
    else:
        settings.update(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                        crop_n_layers=args.crop_n_layers)
    kwargs, from_model = resolve_settings(args.mode, sam, **settings)
    if from_model:
        given = ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in from_model.items())
        print(f"thresholds recommended by the checkpoint: {given} (pass the options to override)")
    return GENERATORS[args.mode](sam, **kwargs)


def annotations_document(file: Path, image_shape: tuple[int, ...], records: list[dict[str, Any]], stats: dict[str, Any]) -> dict[str, Any]:
    """SA-1B-style JSON document for one image."""
    anns = []
    for i, r in enumerate(records, start=1):
        ann = {"id": i, **r}
        anns.append(ann)
    return {
        "image": {"file_name": file.name, "height": int(image_shape[0]), "width": int(image_shape[1])},
        "annotations": anns,
        "stats": stats,
    }


def process_one(generator: Any, file: Path, dest: Path, detections: Any) -> dict[str, Any]:
    """Segment one image and write its two files (overlay first, annotations last)."""
    from pocketsam.io import load_image, save_png_atomic, write_json_atomic
    from pocketsam.viz import overlay_masks

    image = load_image(file)
    if detections is not None:
        from pocketsam.everything.proposals import BoxesProposals

        records = generator.generate(image, proposals=BoxesProposals(*detections.select(file.name)))
    else:
        records = generator.generate(image)
    dest.mkdir(parents=True, exist_ok=True)
    save_png_atomic(overlay_masks(image, records, alpha=0.5, outlines=True), dest / "overlay.png")
    doc = annotations_document(file, image.shape, records, generator.last_stats)
    write_json_atomic(doc, dest / "annotations.json")
    return doc


def run(args: argparse.Namespace) -> int:
    ctx = validate(args)
    files, names, out = ctx["files"], ctx["names"], ctx["out"]
    todo = [(f, out / n) for f, n in zip(files, names) if args.force or not is_done(f, out / n)]
    skipped = len(files) - len(todo)
    if not todo:
        print(f"all {len(files)} image(s) already done in '{out}' (use --force to recompute)")
        return 0

    import torch
    from tqdm import tqdm

    from pocketsam import build_sam
    from pocketsam.errors import PocketSamError

    with warnings_as_lines():
        sam = build_sam(model_type=args.model_type, checkpoint=ctx["checkpoint"], device=ctx["device"])
    if args.mode == "boxes" and not args.boxes:
        if not sam.has_proposal_head:
            raise InputError(
                "--mode boxes needs proposals: this checkpoint has no proposal head",
                "pass --boxes DETECTIONS.json (COCO results), or add a head with `pocketsam train-proposals`",
            )
        print("proposals: the checkpoint's own proposal head (pass --boxes FILE to use a detector's)")
    generator = make_generator(args, sam)
    out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    t0 = time.perf_counter()
    bar = tqdm(todo, desc="everything", unit="img", disable=len(files) == 1)
    for file, dest in bar:
        bar.set_postfix_str(file.name)
        try:
            with torch.inference_mode():
                doc = process_one(generator, file, dest, ctx["detections"])
        except PocketSamError as exc:
            if len(files) == 1:
                raise
            failures.append(f"{file.name}: {exc}")
            continue
        if len(files) == 1:
            print(f"{len(doc['annotations'])} masks for {file.name} in {time.perf_counter() - t0:.1f}s -> {dest}")
    if len(files) > 1:
        done = len(todo) - len(failures)
        print(f"{done} image(s) segmented, {skipped} already done, {len(failures)} failed -> {out}")
        for line in failures:
            print(f"  failed: {line}")
    return 1 if failures else 0
