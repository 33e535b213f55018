"""``pocketsam everything``: segment everything in an image or a folder of images.

Example::

    pocketsam everything photos/ --checkpoint mobile_sam.pt --mode grid --out out/
    pocketsam everything street.jpg --mode boxes --boxes detections.json --out out/

Modes: ``grid`` (segment_anything's point grid), ``hierarchical`` (TinySAM's
sparse-then-dense grid), ``boxes`` (MobileSAMv2-style, one box prompt per detection in
a COCO detections JSON; a folder's images are matched to detections by file name via
the file's ``images`` list, or by numeric file stem = ``image_id``).

For each image writes ``<out>/<name>/annotations.json`` (SA-1B style: ``{"image":
{file_name, height, width, sha256}, "provenance": {...}, "annotations": [{id,
segmentation (COCO RLE), area, bbox, predicted_iou, point_coords, stability_score,
crop_box}], "stats": ...}``) and ``<out>/<name>/overlay.png``. ``<name>`` is the image's
stem, made unique within the folder when stems collide (see :func:`output_names`);
``file_name`` records which image the folder belongs to. Files are written atomically,
annotations last, so an image whose ``annotations.json`` exists and records its file
name is complete.

Resume is honest. ``provenance`` records what made the result (:func:`provenance`): the
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
  ``--overwrite`` to replace such results, or choose another ``--out``.

``--force`` recomputes every image. Everything checkable without the model is checked
before the model is loaded.

One run per output folder at a time: a second run on the same ``--out`` stops with one
"in use" error (an OS lock on ``<out>/.pocketsam.lock``, released however the holder
ends). A run first removes the hidden temporaries a killed run left
(``.NAME.<hex>.tmp``, :func:`pocketsam.io.remove_stale_temporaries`).

``--format coco`` also writes ``<out>/instances.json``: one COCO instances file for all
the images (images, annotations with compressed-RLE segmentation, bbox, area, score,
category_id; see :mod:`pocketsam.everything.coco`), rebuilt from the per-image results
after every run. Image ids come from the detections file, else from numeric file stems,
else 1..N.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from pocketsam.cli.common import (
    add_speed_argument,
    add_threshold_args,
    check_device,
    check_output_dir,
    check_thresholds,
    option_name,
    resolve_checkpoint,
    say_speed,
    threshold_settings,
    warnings_as_lines,
)
from pocketsam.errors import InputError
from pocketsam.everything.modes import MODES, RESULT_SETTINGS, check_proposals, default_setting, make_generator

FORMATS = ("sa1b", "coco")
COCO_FILE = "instances.json"


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
    p.set_defaults(func=run)


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


_HEAD_KEYS = ("image", "provenance")


def _leading_entries(text: str) -> dict[str, Any] | None:
    """The :data:`_HEAD_KEYS` entries at the start of the JSON object in ``text`` (which
    may be only the head of a file); None when the head alone cannot tell."""
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    m = re.compile(r"\s*\{\s*").match(text)
    i = m.end() if m else None
    while i is not None and len(found) < len(_HEAD_KEYS):
        m = re.compile(r'"([^"\\]*)"\s*:\s*').match(text, i)
        if m is None:
            return None
        if m.group(1) not in _HEAD_KEYS:
            return found  # past the head: what is missing is not there
        try:
            found[m.group(1)], end = decoder.raw_decode(text, m.end())
        except json.JSONDecodeError:
            return None  # cut off by the end of the head
        m = re.compile(r"\s*,\s*").match(text, end)
        i = m.end() if m else None
    return found if i is not None or len(found) == len(_HEAD_KEYS) else None


def recorded_head(annotations: Path) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """The ``image`` and ``provenance`` objects an ``annotations.json`` records (provenance
    None when it has none); None if the file is unreadable or records no image.

    :func:`annotations_document` puts ``image`` and ``provenance`` first, so usually only
    the head of the file is parsed (a folder of large results resumes without reading
    them all).
    """
    try:
        with open(annotations, encoding="utf-8") as f:
            head = f.read(1 << 16)
            found = _leading_entries(head)
            if found is None or "image" not in found:
                doc = json.loads(head + f.read())
                found = {k: doc[k] for k in _HEAD_KEYS if k in doc}
        image = found["image"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):  # a damaged file: not ours
        return None
    if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
        return None
    prov = found.get("provenance")
    return image, prov if isinstance(prov, dict) else None


def recorded_file_name(annotations: Path) -> str | None:
    """The ``image.file_name`` an ``annotations.json`` records; None if it is unreadable."""
    head = recorded_head(annotations)
    return head[0]["file_name"] if head else None


def is_done(file: Path, dest: Path) -> bool:
    """``dest`` holds a complete result for this image's file name (a result of another
    image with the same output name does not count). Whether it is still *valid* is
    :func:`result_status`'s question."""
    return recorded_file_name(dest / "annotations.json") == file.name


# ------------------------------------------------------------------------- provenance

#: Provenance entries recorded for the reader but not compared: renaming a file changes
#: no result (its bytes are compared by SHA-256).
INFORMATIONAL = ("checkpoint.file", "proposals.file")


def generator_settings(args: argparse.Namespace, checkpoint: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """The generator's keyword arguments for these options and this checkpoint, read
    without building the model (:func:`pocketsam.checkpoints.read_metadata`): options
    given, else the checkpoint's recommendations (:func:`pocketsam.everything.resolve_settings`).

    Returns:
        (kwargs, from_model) — ``from_model``: the settings taken from the checkpoint.
    """
    from types import SimpleNamespace

    from pocketsam.checkpoints import CheckpointWarning, everything_defaults, read_metadata
    from pocketsam.everything import resolve_settings

    settings: dict[str, Any] = {
        "box_nms_thresh": args.box_nms_thresh,
        "min_mask_region_area": args.min_mask_region_area,
        "output_mode": "coco_rle",
        **threshold_settings(args),
    }
    if args.mode == "boxes":
        # recorded as applied: detections use 0.4 unless told; the head's own threshold
        # travels in the checkpoint (hashed into the provenance)
        settings["score_thresh"] = 0.4 if args.box_score_thresh is None and args.boxes else args.box_score_thresh
    else:
        settings.update(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                        crop_n_layers=args.crop_n_layers)
    with warnings.catch_warnings():  # a bad recorded value is reported when the model loads
        warnings.simplefilter("ignore", CheckpointWarning)
        recommended = everything_defaults(read_metadata(checkpoint), f"checkpoint '{checkpoint}'")
    return resolve_settings(args.mode, SimpleNamespace(everything_defaults=recommended), **settings)


def provenance(args: argparse.Namespace, checkpoint: Path, kwargs: dict[str, Any],
               checkpoint_sha256: str, proposals: dict[str, Any] | None) -> dict[str, Any]:
    """What made a result: compared on resume (all but :data:`INFORMATIONAL`) and written
    into every ``annotations.json`` (and the COCO file's ``info``).

    Args:
        kwargs: the generator's keyword arguments (:func:`generator_settings`); settings
            left out are the generator's defaults and are recorded as such.
        proposals: boxes mode: where the boxes came from.
    """
    from pocketsam import __version__
    from pocketsam.checkpoints import ASSETS, DEFAULT_CHECKPOINT_NAME, multimask_only_by_name

    settings = {k: kwargs[k] if k in kwargs else default_setting(args.mode, k) for k in RESULT_SETTINGS[args.mode]}
    ckpt: dict[str, Any] = {"file": checkpoint.name, "sha256": checkpoint_sha256}
    if checkpoint.resolve() == (ASSETS / DEFAULT_CHECKPOINT_NAME).resolve():
        ckpt["bundled"] = True
    if args.model_type is None and multimask_only_by_name(checkpoint):
        ckpt["tinysam_decoder"] = True  # the file name selects TinySAM's decoder behaviour
    return {
        "pocketsam": __version__,
        "checkpoint": ckpt,
        "model_type": args.model_type,
        "mode": args.mode,
        "settings": settings,
        "proposals": proposals,
    }


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def provenance_differences(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """``["mode: grid → hierarchical", ...]`` for what differs (informational entries
    aside); ``[]`` when the result was made the same way."""
    if old is None:
        return ["no provenance recorded (made by an earlier pocketsam)"]
    a, b = _flatten(old), _flatten(new)

    def show(v: Any) -> str:
        if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v):
            return v[:12] + "…"
        return "none" if v is None else f"{v}"

    return [f"{k}: {show(a.get(k))} → {show(b.get(k))}" for k in sorted(a.keys() | b.keys())
            if k not in INFORMATIONAL and a.get(k) != b.get(k)]


def detections_digest(detections: Any, file: Path) -> dict[str, Any]:
    """The proposals record of one image in boxes mode with a detections file: the SHA-256
    of that image's own detections (so adding detections for other images leaves its
    result valid)."""
    source = detections.proposals(file.name)
    text = json.dumps({"boxes": source.boxes.tolist(), "scores": source.scores.tolist(),
                       "categories": source.categories}, separators=(",", ":"))
    return {"source": "detections", "file": detections.path.name,
            "sha256": hashlib.sha256(text.encode()).hexdigest()}


def validate(args: argparse.Namespace) -> dict[str, Any]:
    """Check arguments and inputs; returns what :func:`run` needs. No model involved."""
    from pocketsam.io import sha256_file

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
    names = output_names(files)
    out = check_output_dir(args.out)
    checkpoint = resolve_checkpoint(args.checkpoint)
    device = check_device(args.device)
    if args.mode == "boxes" and detections is None:
        from pocketsam.checkpoints import has_proposal_head

        check_proposals(args.mode, False, has_proposal_head(checkpoint))
    kwargs, from_model = generator_settings(args, checkpoint)
    from pocketsam.quant.artifact import identity_file

    base = provenance(args, checkpoint, kwargs, sha256_file(identity_file(checkpoint)), None)

    def provenance_of(file: Path) -> dict[str, Any]:
        if args.mode != "boxes":
            return base
        source = detections_digest(detections, file) if detections is not None else {"source": "proposal head"}
        return {**base, "proposals": source}

    return {
        "files": files,
        "names": names,
        "out": out,
        "checkpoint": checkpoint,
        "device": device,
        "detections": detections,
        "generator_kwargs": kwargs,
        "from_model": from_model,
        "provenance_of": provenance_of,
    }


def say_recommended(from_model: dict[str, float]) -> None:
    """One line naming the thresholds that came from the checkpoint, if any."""
    if from_model:
        given = ", ".join(f"{option_name(k)} {v:g}" for k, v in from_model.items())
        print(f"thresholds recommended by the checkpoint: {given} (pass the options to override)")


def annotations_document(file: Path, image_shape: tuple[int, ...], records: list[dict[str, Any]], stats: dict[str, Any],
                         provenance: dict[str, Any] | None = None, sha256: str | None = None) -> dict[str, Any]:
    """SA-1B-style JSON document for one image; ``image`` and ``provenance`` come first
    (:func:`recorded_head` reads only the head of the file)."""
    image: dict[str, Any] = {"file_name": file.name, "height": int(image_shape[0]), "width": int(image_shape[1])}
    if sha256 is not None:
        image["sha256"] = sha256
    doc: dict[str, Any] = {"image": image}
    if provenance is not None:
        doc["provenance"] = provenance
    doc["annotations"] = [{"id": i, **r} for i, r in enumerate(records, start=1)]
    doc["stats"] = stats
    return doc


def process_one(generator: Any, file: Path, dest: Path, detections: Any, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Segment one image and write its two files (overlay first, annotations last)."""
    from pocketsam.io import load_image, save_png_atomic, sha256_file, write_json_atomic
    from pocketsam.viz import overlay_masks

    digest = sha256_file(file)
    image = load_image(file)
    if detections is not None:
        records = generator.generate(image, proposals=detections.proposals(file.name))
    else:
        records = generator.generate(image)
    dest.mkdir(parents=True, exist_ok=True)
    save_png_atomic(overlay_masks(image, records, alpha=0.5, outlines=True), dest / "overlay.png")
    doc = annotations_document(file, image.shape, records, generator.last_stats, provenance, digest)
    write_json_atomic(doc, dest / "annotations.json")
    return doc


def plan(args: argparse.Namespace, ctx: dict[str, Any]) -> tuple[list[tuple[Path, Path]], dict[str, int]]:
    """Which images to (re)compute, before any model is loaded.

    Returns:
        ``(todo, counts)``; ``counts``: ``done`` (kept), ``changed`` (the image's bytes
        changed), ``replaced`` (made differently, replaced under ``--overwrite``).
    Raises:
        InputError: some finished results were made differently and ``--overwrite`` is
            not given (one line naming the differences).
    """
    from pocketsam.io import sha256_file

    todo: list[tuple[Path, Path]] = []
    stale: list[list[str]] = []
    counts = {"done": 0, "changed": 0, "replaced": 0}
    for file, name in zip(ctx["files"], ctx["names"]):
        dest = ctx["out"] / name
        head = None if args.force else recorded_head(dest / "annotations.json")
        if head is None or head[0]["file_name"] != file.name:
            todo.append((file, dest))
            continue
        image, recorded = head
        diffs = provenance_differences(recorded, ctx["provenance_of"](file))
        if diffs:
            stale.append(diffs)
            todo.append((file, dest))
        elif image.get("sha256") != sha256_file(file):
            counts["changed"] += 1
            todo.append((file, dest))
        else:
            counts["done"] += 1
    if stale and not args.overwrite:
        seen: list[str] = []
        for diffs in stale:
            seen += [d for d in diffs if d not in seen]
        shown = "; ".join(seen[:4]) + ("; …" if len(seen) > 4 else "")
        n = len(stale)
        raise InputError(
            f"{n} finished result{'s' * (n != 1)} in '{ctx['out']}' {'were' if n != 1 else 'was'} made differently ({shown})",
            f"pass --overwrite to replace {'them' if n != 1 else 'it'}, or choose another --out",
        )
    counts["replaced"] = len(stale)
    return todo, counts


def write_coco(args: argparse.Namespace, ctx: dict[str, Any]) -> str:
    """Write ``<out>/instances.json`` from the images' results (:mod:`pocketsam.everything.coco`).

    Only results with this run's provenance go in (an image that failed this time and
    kept an older result is left out). Returns the summary line.
    """
    from pocketsam.everything.coco import image_ids, write_coco_instances
    from pocketsam.io import read_json

    files, detections = ctx["files"], ctx["detections"]
    ids = image_ids([f.name for f in files], detections)
    images, missing = [], []
    for file, name, image_id in zip(files, ctx["names"], ids):
        path = ctx["out"] / name / "annotations.json"
        head = recorded_head(path)
        if head is None or head[0]["file_name"] != file.name or provenance_differences(head[1], ctx["provenance_of"](file)):
            missing.append(file.name)
            continue
        doc = read_json(path, "annotations file")
        images.append(({"id": image_id, **doc["image"]}, doc["annotations"]))
    info = {"description": f"pocketsam everything --mode {args.mode}",
            "provenance": {**ctx["provenance_of"](files[0]), "proposals": _proposals_kind(args, detections)}}
    path = ctx["out"] / COCO_FILE
    doc = write_coco_instances(path, images, detections.category_names if detections is not None else None, info)
    line = f"wrote {path}: {len(doc['images'])} image(s), {len(doc['annotations'])} annotation(s)"
    return line + (f" ({len(missing)} image(s) without a result left out)" if missing else "")


def _proposals_kind(args: argparse.Namespace, detections: Any) -> dict[str, Any] | None:
    if args.mode != "boxes":
        return None
    return {"source": "detections", "file": detections.path.name} if detections is not None else {"source": "proposal head"}


def run(args: argparse.Namespace) -> int:
    """One run per output folder at a time (:func:`pocketsam.io.folder_lock`; a second is
    refused as "in use"); what a killed run left half-written is removed first."""
    from pocketsam.io import folder_lock, remove_stale_temporaries

    ctx = validate(args)
    with folder_lock(ctx["out"], "`pocketsam everything` run"):
        remove_stale_temporaries(ctx["out"], depth=1)
        return _run(args, ctx)


def _run(args: argparse.Namespace, ctx: dict[str, Any]) -> int:
    files, out = ctx["files"], ctx["out"]
    todo, counts = plan(args, ctx)
    skipped = counts["done"]
    if not todo:
        print(f"all {len(files)} image(s) already done in '{out}' (use --force to recompute)")
        if args.format == "coco":
            print(write_coco(args, ctx))
        return 0

    import torch
    from tqdm import tqdm

    from pocketsam import build_sam
    from pocketsam.errors import PocketSamError

    with warnings_as_lines():
        sam = build_sam(model_type=args.model_type, checkpoint=ctx["checkpoint"], device=ctx["device"])
    if args.mode == "boxes" and not args.boxes:
        print("proposals: the checkpoint's own proposal head (pass --boxes FILE to use a detector's)")
    say_recommended(ctx["from_model"])
    generator = make_generator(args.mode, sam, **ctx["generator_kwargs"], speed=args.speed)
    say_speed(generator.predictor)
    out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    t0 = time.perf_counter()
    bar = tqdm(todo, desc="everything", unit="img", disable=len(files) == 1)
    for file, dest in bar:
        bar.set_postfix_str(file.name)
        try:
            with torch.inference_mode():
                doc = process_one(generator, file, dest, ctx["detections"], ctx["provenance_of"](file))
        except PocketSamError as exc:
            if len(files) == 1:
                raise
            failures.append(f"{file.name}: {exc}")
            continue
        if len(files) == 1:
            print(f"{len(doc['annotations'])} masks for {file.name} in {time.perf_counter() - t0:.1f}s -> {dest}")
    if counts["replaced"]:
        print(f"replaced {counts['replaced']} result(s) made with other settings (--overwrite)")
    if counts["changed"]:
        print(f"recomputed {counts['changed']} image(s) whose file changed since its result was made")
    if len(files) > 1:
        done = len(todo) - len(failures)
        print(f"{done} image(s) segmented, {skipped} already done, {len(failures)} failed -> {out}")
        for line in failures:
            print(f"  failed: {line}")
    if args.format == "coco":
        print(write_coco(args, ctx))
    return 1 if failures else 0
