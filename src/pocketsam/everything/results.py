"""Results of "segment everything" on image files: where they go, what made them, when
they are done, and one COCO file for many images. ``pocketsam everything`` is a thin
layer over this module; Python code gets the same folders, resume and COCO file::

    from pocketsam.everything import make_generator
    from pocketsam.everything.results import EverythingRun, output_names, provenance
    from pocketsam.io import load_image

    run = EverythingRun(out, files, provenance_of=lambda file: prov)
    plan = run.plan(overwrite=False)           # before any model is loaded
    for file, dest in plan.todo:
        image = load_image(file)
        run.write(file, image, generator.generate(image), generator.last_stats)
    run.write_coco()

Layout: ``<out>/<name>/annotations.json`` (SA-1B style: ``{"image": {file_name, height,
width, sha256}, "provenance": {...}, "annotations": [...], "stats": {...}}``) and
``<out>/<name>/overlay.png``, ``<name>`` from :func:`output_names`. The two files of an
image are replaced together (:func:`pocketsam.io.replace_files_together`, annotations
last), so neither is ever left without the other by a failure.

An image's result is *done* when every file of :data:`RESULT_FILES` is there and
``annotations.json`` records the image's file name. It is *current* when, moreover, it
records the same :func:`provenance` (all but :data:`INFORMATIONAL`) and the image's bytes
still have the recorded SHA-256. :meth:`EverythingRun.plan` sorts a folder's images by
these rules.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pocketsam.errors import InputError, PocketSamError
from pocketsam.everything.coco import coco_instances, image_ids
from pocketsam.everything.modes import COCO_FILE, result_settings
from pocketsam.io import (
    _json_default,
    loads_json,
    read_json,
    replace_files_together,
    save_png_atomic,
    sha256_file,
    write_json_atomic,
)
from pocketsam.version import __version__
from pocketsam.viz import overlay_masks
from pocketsam.weights import is_bundled, multimask_only_by_name

ANNOTATIONS = "annotations.json"
OVERLAY = "overlay.png"
#: The files of one image's result, in the order they are written (annotations last: it
#: names the image the folder belongs to).
RESULT_FILES = (OVERLAY, ANNOTATIONS)
#: The COCO instances file of a whole output folder.

#: Provenance entries recorded for the reader but not compared: renaming a file changes
#: no result (its bytes are compared by SHA-256).
INFORMATIONAL = ("checkpoint.file", "proposals.file")

_HEAD_KEYS = ("image", "provenance")


# ------------------------------------------------------------------------------ names
def output_names(files: Sequence[Path]) -> list[str]:
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

    files = [Path(f) for f in files]
    names = [f.stem for f in files]
    names = [f"{f.stem}_{f.suffix[1:].lower()}" if c else n for n, f, c in zip(names, files, collide(names))]
    names = [f"{n}_{hashlib.sha1(os.fsencode(f.name)).hexdigest()[:8]}" if c else n
             for n, f, c in zip(names, files, collide(names))]
    clash = [f.name for f, c in zip(files, collide(names)) if c]
    if clash:
        raise InputError(f"cannot give the images {', '.join(clash)} distinct output folders", "rename one of them")
    return names


# ----------------------------------------------------------------- reading a result
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
        except (json.JSONDecodeError, RecursionError):
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
                doc = loads_json(head + f.read())
                found = {k: doc[k] for k in _HEAD_KEYS if k in doc}
        image = found["image"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError, PocketSamError):
        return None  # a damaged file: not ours
    if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
        return None
    prov = found.get("provenance")
    return image, prov if isinstance(prov, dict) else None


def recorded_file_name(annotations: Path) -> str | None:
    """The ``image.file_name`` an ``annotations.json`` records; None if it is unreadable."""
    head = recorded_head(annotations)
    return head[0]["file_name"] if head else None


def missing_files(dest: Path) -> list[str]:
    """The files of :data:`RESULT_FILES` that ``dest`` lacks."""
    return [name for name in RESULT_FILES if not (Path(dest) / name).is_file()]


def is_done(file: Path, dest: Path) -> bool:
    """``dest`` holds a complete result for this image's file name: every file of
    :data:`RESULT_FILES`, and an ``annotations.json`` that names this file (a result of
    another image with the same output name does not count). Whether it is still
    *current* is :meth:`EverythingRun.plan`'s question."""
    return recorded_file_name(Path(dest) / ANNOTATIONS) == Path(file).name and not missing_files(dest)


# ------------------------------------------------------------------------- provenance
def provenance(checkpoint: Path, checkpoint_sha256: str, mode: str, settings: Mapping[str, Any],
               model_type: str | None = None, proposals: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What made a result: compared on resume (all but :data:`INFORMATIONAL`) and written
    into every ``annotations.json`` (and the COCO file's ``info``).

    Args:
        checkpoint: the checkpoint file (its name is informational).
        checkpoint_sha256: the SHA-256 of the file that identifies the weights
            (:func:`pocketsam.runtime.load.identity_file` for an int8 artifact).
        mode: the everything mode.
        settings: the generator's keyword arguments as applied; the result settings
            (:data:`~pocketsam.everything.modes.SETTINGS`, one typed object per mode)
            left out are the defaults and are recorded as such.
        model_type: a forced architecture, or None (detected).
        proposals: boxes mode: where the boxes came from.
    """

    checkpoint = Path(checkpoint)
    recorded = asdict(result_settings(mode, settings))
    ckpt: dict[str, Any] = {"file": checkpoint.name, "sha256": checkpoint_sha256}
    if is_bundled(checkpoint):
        ckpt["bundled"] = True
    if model_type is None and multimask_only_by_name(checkpoint):
        ckpt["tinysam_decoder"] = True  # the file name selects TinySAM's decoder behaviour
    return {
        "pocketsam": __version__,
        "checkpoint": ckpt,
        "model_type": model_type,
        "mode": mode,
        "settings": recorded,
        "proposals": dict(proposals) if proposals is not None else None,
    }


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def provenance_differences(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """``["mode: grid → hierarchical", ...]`` for what differs (informational entries
    aside); ``[]`` when the result was made the same way."""
    if old is None:
        return ["no provenance recorded (made by an earlier pocketsam)"]
    a, b = _flatten(dict(old)), _flatten(dict(new))

    def show(v: Any) -> str:
        if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v):
            return v[:12] + "…"
        return "none" if v is None else f"{v}"

    return [f"{k}: {show(a.get(k))} → {show(b.get(k))}" for k in sorted(a.keys() | b.keys())
            if k not in INFORMATIONAL and a.get(k) != b.get(k)]


def detections_digest(detections: Any, file: Path) -> dict[str, Any]:
    """The proposals record of one image in boxes mode with a detections file
    (:class:`~pocketsam.proposals.sources.CocoDetections`): the SHA-256 of that image's
    own detections (so adding detections for other images leaves its result current)."""
    source = detections.proposals(Path(file).name)
    text = json.dumps({"boxes": source.boxes.tolist(), "scores": source.scores.tolist(),
                       "categories": source.categories}, separators=(",", ":"))
    return {"source": "detections", "file": detections.path.name,
            "sha256": hashlib.sha256(text.encode()).hexdigest()}


# ------------------------------------------------------------------ writing a result
def annotations_document(file: Path, image_shape: tuple[int, ...], records: list[dict[str, Any]], stats: dict[str, Any],
                         provenance: Mapping[str, Any] | None = None, sha256: str | None = None) -> dict[str, Any]:
    """SA-1B-style JSON document for one image; ``image`` and ``provenance`` come first
    (:func:`recorded_head` reads only the head of the file)."""
    image: dict[str, Any] = {"file_name": Path(file).name, "height": int(image_shape[0]), "width": int(image_shape[1])}
    if sha256 is not None:
        image["sha256"] = sha256
    doc: dict[str, Any] = {"image": image}
    if provenance is not None:
        doc["provenance"] = dict(provenance)
    doc["annotations"] = [{"id": i, **r} for i, r in enumerate(records, start=1)]
    doc["stats"] = stats
    return doc


def _json_text(doc: dict[str, Any], file: Path) -> str:
    try:
        return json.dumps(doc, indent=2, default=_json_default, allow_nan=False) + "\n"
    except ValueError as exc:  # NaN or infinity: not JSON, and not a valid result either
        bad = [f"annotation {a.get('id')} {k}" for a in doc["annotations"] for k, v in a.items()
               if isinstance(v, float) and not math.isfinite(v)]
        raise PocketSamError(f"the result for '{Path(file).name}' holds non-finite numbers "
                             f"({', '.join(bad[:3]) or exc})", "nothing was written for this image") from None


def write_result(dest: Path, file: Path, image: Any, records: list[dict[str, Any]], stats: dict[str, Any],
                 provenance: Mapping[str, Any] | None = None, sha256: str | None = None) -> dict[str, Any]:
    """Write one image's result into folder ``dest``: ``overlay.png`` and ``annotations.json``,
    replaced together (either both new files or, on any failure, the folder as it was).

    Args:
        image: the ``H×W×3`` uint8 image the records are of.
        records: the generator's records (``output_mode="coco_rle"`` for JSON).
        sha256: the image file's SHA-256 (recorded; resume compares it).
    Returns:
        the ``annotations.json`` document.
    Raises:
        PocketSamError: a record holds NaN or infinity (nothing is written).
        InputError: ``dest`` cannot be written.
    """

    doc = annotations_document(file, image.shape, records, stats, provenance, sha256)
    text = _json_text(doc, file)  # before anything is written
    overlay = overlay_masks(image, records, alpha=0.5, outlines=True)
    with replace_files_together(dest, last=(ANNOTATIONS,), stale=lambda name: name in RESULT_FILES) as stage:
        save_png_atomic(overlay, stage / OVERLAY)
        (stage / ANNOTATIONS).write_text(text, encoding="utf-8")
    return doc


# ------------------------------------------------------------------- a folder's run
@dataclass
class ResumePlan:
    """What :meth:`EverythingRun.plan` found, before any model is loaded.

    Attributes:
        todo: ``(file, dest)`` of the images to (re)compute, in order.
        done: how many images have a current result (kept).
        changed: file names whose bytes changed since their result was made.
        incomplete: ``(file name, missing file names)`` of results lacking a file.
        stale: file names whose result was made differently (replaced under ``overwrite``).
        differences: the differences of the stale results, each once, in order.
    """

    todo: list[tuple[Path, Path]] = field(default_factory=list)
    done: int = 0
    changed: list[str] = field(default_factory=list)
    incomplete: list[tuple[str, list[str]]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)


class EverythingRun:
    """The results of one set of images in one output folder.

    Args:
        out: the output folder.
        files: the image files (distinct names).
        provenance_of: ``file -> provenance`` of the result this run makes for ``file``
            (:func:`provenance`); None records none (such results are never current).
        names: the output folder name of each file (default :func:`output_names`).
        detections: boxes mode with a detections file: its
            :class:`~pocketsam.proposals.sources.CocoDetections` (COCO ids, categories).
    """

    def __init__(self, out: Path, files: Sequence[Path], provenance_of: Callable[[Path], Mapping[str, Any]] | None = None,
                 names: Sequence[str] | None = None, detections: Any = None) -> None:
        self.out = Path(out)
        self.files = [Path(f) for f in files]
        self.names = list(names) if names is not None else output_names(self.files)
        self.provenance_of = provenance_of
        self.detections = detections
        self.failed: set[str] = set()
        self._dest = {f.name: self.out / n for f, n in zip(self.files, self.names)}

    def dest(self, file: Path) -> Path:
        """The result folder of ``file`` (one of :attr:`files`)."""
        return self._dest[Path(file).name]

    def _provenance(self, file: Path) -> dict[str, Any] | None:
        return dict(self.provenance_of(file)) if self.provenance_of is not None else None

    def plan(self, force: bool = False, overwrite: bool = False) -> ResumePlan:
        """Which images to (re)compute: those without a complete result of their own, those
        whose bytes changed (the result describes a picture that no longer exists), and,
        under ``overwrite``, those made differently; ``force``: all of them.

        Raises:
            InputError: some finished results were made differently and ``overwrite`` is
                false (one line naming the differences).
        """

        plan = ResumePlan()
        for file, name in zip(self.files, self.names):
            dest = self.out / name
            head = None if force else recorded_head(dest / ANNOTATIONS)
            if head is None or head[0]["file_name"] != file.name:
                plan.todo.append((file, dest))
                continue
            image, recorded = head
            diffs = provenance_differences(recorded, self._provenance(file) or {})
            if diffs:
                plan.stale.append(file.name)
                plan.differences += [d for d in diffs if d not in plan.differences]
                plan.todo.append((file, dest))
            elif image.get("sha256") != sha256_file(file):
                plan.changed.append(file.name)
                plan.todo.append((file, dest))
            elif missing := missing_files(dest):
                plan.incomplete.append((file.name, missing))
                plan.todo.append((file, dest))
            else:
                plan.done += 1
        if plan.stale and not overwrite:
            shown = "; ".join(plan.differences[:4]) + ("; …" if len(plan.differences) > 4 else "")
            n = len(plan.stale)
            raise InputError(
                f"{n} finished result{'s' * (n != 1)} in '{self.out}' {'were' if n != 1 else 'was'} made differently ({shown})",
                f"pass --overwrite to replace {'them' if n != 1 else 'it'}, or choose another --out",
            )
        return plan

    def write(self, file: Path, image: Any, records: list[dict[str, Any]], stats: dict[str, Any],
              sha256: str | None = None) -> dict[str, Any]:
        """:func:`write_result` for ``file`` into its folder, with this run's provenance
        (``sha256``: the file's, computed here when not given)."""

        file = Path(file)
        return write_result(self.dest(file), file, image, records, stats, self._provenance(file),
                            sha256 if sha256 is not None else sha256_file(file))

    def fail(self, file: Path) -> None:
        """Record that ``file`` failed in this run: :meth:`write_coco` leaves it out even if
        an older result of it is on disk."""
        self.failed.add(Path(file).name)

    def current(self, file: Path) -> bool:
        """``file`` has a complete result with this run's provenance (and did not fail in
        this run)."""
        file = Path(file)
        dest = self.dest(file)
        head = recorded_head(dest / ANNOTATIONS)
        return (file.name not in self.failed and head is not None and head[0]["file_name"] == file.name
                and not missing_files(dest) and not provenance_differences(head[1], self._provenance(file) or {}))

    def coco(self, info: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
        """One COCO instances document (:func:`pocketsam.everything.coco.coco_instances`) of
        the images' current results; returns it and the names of the images left out."""

        ids = image_ids([f.name for f in self.files], self.detections)
        images, missing = [], []
        for file, image_id in zip(self.files, ids):
            if not self.current(file):
                missing.append(file.name)
                continue
            doc = read_json(self.dest(file) / ANNOTATIONS, "annotations file")
            images.append(({"id": image_id, **doc["image"]}, doc["annotations"]))
        names = self.detections.category_names if self.detections is not None else None
        return coco_instances(images, names, info), missing

    def write_coco(self, info: Mapping[str, Any] | None = None) -> tuple[Path, dict[str, Any], list[str]]:
        """:meth:`coco`, written atomically to ``<out>/instances.json``; returns the path,
        the document and the images left out."""

        doc, missing = self.coco(info)
        path = self.out / COCO_FILE
        write_json_atomic(doc, path, indent=None)
        return path, doc, missing


def proposals_kind(mode: str, detections: Any) -> dict[str, Any] | None:
    """The proposals record of a whole run (the COCO file's ``info``): which source, not
    each image's digest."""
    if mode != "boxes":
        return None
    return {"source": "detections", "file": detections.path.name} if detections is not None else {"source": "proposal head"}


__all__ = ["ANNOTATIONS", "COCO_FILE", "EverythingRun", "INFORMATIONAL", "OVERLAY", "RESULT_FILES", "ResumePlan",
           "annotations_document", "detections_digest", "is_done", "missing_files", "output_names", "provenance",
           "provenance_differences", "proposals_kind", "recorded_file_name", "recorded_head", "write_result"]
