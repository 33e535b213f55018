"""Object-proposal sources for :class:`~pocketsam.everything.ObjectAwareMaskGenerator`.

A source is anything matching :class:`ProposalSource`: called with the image, it returns
``(boxes, scores)`` — ``N×4`` float XYXY boxes in image pixels and ``N`` scores. A
source that knows the boxes' categories may return ``(boxes, scores, category_ids)``
instead (``N`` integer ids, ``None`` for a box without one); the fixed sources below keep
returning two values and carry theirs as a ``categories`` attribute, so code that calls
them keeps working. The generator keeps each mask's detection score and category in its
record (:func:`unpack_proposals` reads every form). Provided:

* :class:`BoxesProposals` — fixed boxes (and optional scores) you already have;
* any plain callable with that signature (e.g. your own detector);
* :class:`CocoDetectionsProposals` — detections in a COCO *results* JSON file, read by
  :class:`CocoDetections`, the one validating reader of detection files (also behind
  ``eval coco`` and ``eval everything --boxes``);
* :class:`YoloProposals` — an Ultralytics YOLO model (MobileSAMv2's object-aware model
  is one); needs the optional ``ultralytics`` package and a local weights file;
* :class:`HeadProposals` — the checkpoint's own proposal head
  (:class:`~pocketsam.models.proposal_head.ProposalHead`). Unlike an external detector it
  reads the image embedding the predictor has already computed, so it is asked through
  :meth:`HeadProposals.from_predictor` after ``set_image``, not with the image.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sized, Union, runtime_checkable

import numpy as np
import torch

from pocketsam.errors import InputError, PocketSamError
from pocketsam.io import read_json
from pocketsam.proposals.coding import decode_boxes


@runtime_checkable
class ProposalSource(Protocol):
    """``source(image) -> (boxes_xyxy float N×4, scores float N)``, or
    ``(boxes, scores, category_ids)`` with ``N`` integer category ids (or ``None`` each).
    A source returning two values may carry the ids of the boxes it returns as a
    ``categories`` attribute (as :class:`BoxesProposals` does)."""

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, ...]: ...


def check_proposals(boxes: Any, scores: Any, where: str = "proposal source") -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise proposals to ``(float64 N×4, float64 N)``.

    ``scores=None`` means all 1.0. Raises :class:`InputError` on bad shapes or values.
    """
    b = np.asarray(boxes if boxes is not None else np.zeros((0, 4)), dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"{where} returned boxes of shape {tuple(b.shape)}, expected N×4 (x0, y0, x1, y1)")
    if scores is None:
        s = np.ones(len(b), dtype=np.float64)
    else:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(s) != len(b):
        raise InputError(f"{where} returned {len(b)} boxes but {len(s)} scores")
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise InputError(f"{where} returned non-finite boxes or scores")
    return b, s


def check_categories(categories: Any, n: int, where: str = "proposal source") -> list[int | None] | None:
    """Validate per-box category ids: ``N`` integers (``None`` for a box without one), or
    ``None`` for none at all. Raises :class:`InputError` otherwise."""
    if categories is None:
        return None
    values = list(np.asarray(categories, dtype=object).reshape(-1))
    if len(values) != n:
        raise InputError(f"{where} returned {n} boxes but {len(values)} category ids")
    out: list[int | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out.append(int(v))
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            out.append(int(v))
        else:
            raise InputError(f"{where} returned category id {v!r}", "category ids must be integers")
    return out if any(v is not None for v in out) else None


def unpack_proposals(result: Any, source: Any = None, where: str = "proposal source") -> tuple[np.ndarray, np.ndarray, list[int | None] | None]:
    """What a proposal source returned — ``(boxes, scores)`` or ``(boxes, scores,
    category_ids)`` — as ``(float64 N×4, float64 N, categories or None)``, validated by
    :func:`check_proposals` and :func:`check_categories`. With two values, the source's
    ``categories`` attribute (if any) gives the ids."""
    if not isinstance(result, (tuple, list)) or len(result) not in (2, 3):
        raise InputError(f"{where} returned {type(result).__name__}", "return (boxes, scores) or (boxes, scores, category_ids)")
    boxes, scores = check_proposals(result[0], result[1], where)
    categories = result[2] if len(result) == 3 else (source.categories if source is not None else None)
    return boxes, scores, check_categories(categories, len(boxes), where)


class SourceBase:
    """What :class:`~pocketsam.everything.ObjectAwareMaskGenerator` asks of every source
    besides calling it; :func:`as_proposal_source` wraps a plain callable in one."""

    uses_embedding: bool = False
    """True: boxes come from the image embedding (:meth:`HeadProposals.from_predictor`)."""
    score_thresh: float | None = None
    """The score threshold the source recommends (None: the generator's default)."""
    categories: Any = None
    """Category ids of the boxes a two-value source returns (or None)."""


class CallableProposals(SourceBase):
    """A user's callable (e.g. a detector) as a source."""

    def __init__(self, fn: Callable[[np.ndarray], tuple[np.ndarray, ...]]) -> None:
        self.fn = fn
        self.description = getattr(fn, "description", None) or getattr(fn, "__name__", type(fn).__name__)
        self.score_thresh = getattr(fn, "score_thresh", None)  # a user object may recommend one
        self.categories = getattr(fn, "categories", None)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, ...]:
        result = self.fn(image)
        self.categories = getattr(self.fn, "categories", None)  # may be set by the call
        return result


class BoxesProposals(SourceBase):
    """Fixed proposals: ``boxes`` ``N×4`` XYXY in image pixels, optional ``scores`` ``N``
    (default 1.0 each) and ``categories`` ``N`` (integer ids, ``None`` for a box without
    one; kept as the :attr:`categories` attribute, the call returns ``(boxes, scores)``)."""

    def __init__(self, boxes: Any, scores: Any = None, categories: Any = None) -> None:
        self.boxes, self.scores = check_proposals(boxes, scores, "BoxesProposals")
        self.categories = check_categories(categories, len(self.boxes), "BoxesProposals")

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.boxes, self.scores


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class CocoDetections:
    """A COCO detections file, validated and indexed by image: the one reader of detection
    files (``everything --mode boxes``, ``eval everything --boxes``, ``eval coco``), so all
    of them accept and refuse the same entries.

    Accepts a COCO *results* list (``[{"image_id", "bbox": [x, y, w, h], "score",
    "category_id"}, ...]``), or a COCO *dataset* dict with ``images`` (``id``,
    ``file_name``), ``annotations`` and optionally ``categories``. Every entry must have
    (see :meth:`check_entry`):

    * ``image_id``: an integer (or, instead, a ``file_name`` string);
    * ``bbox``: ``[x, y, w, h]``, four finite numbers with ``w, h >= 0``;
    * ``score``: a finite number. A results list needs one; a dataset's annotations
      (ground truth used as proposals) may leave it out, then it is 1.0;
    * ``category_id``: optional, an integer. Where the categories are known (the
      ``categories`` argument, else a dataset's own ``categories`` list) it is required
      and must be one of them.

    Images are selected by id, or by file name: through ``images[].file_name`` when present,
    else by a numeric file stem (``000000397133.jpg`` → id 397133), or by a ``file_name``
    key on the detections themselves.

    Args:
        path: the file.
        categories: the category ids detections may have (``eval coco``: the annotation
            file's); None: as above.
    Attributes:
        detections: the entries, normalised (``image_id`` or ``file_name``, ``bbox`` as
            floats, ``score`` as a float, ``category_id`` when given), in file order.
        by_image: image key → (XYXY boxes, scores), in file order.
        categories_by_image: image key → the detections' ``category_id`` (``None`` where
            an entry has none), in the same order.
    Raises:
        InputError: unreadable, not a detections file, or an entry that breaks a rule
            (the message names the entry and the rule).
    """

    def __init__(self, path: str | Path, categories: Iterable[int] | None = None) -> None:
        self.path = Path(path)
        obj = read_json(self.path, "detections file")
        self.names: dict[str, Any] = {}
        if isinstance(obj, dict):
            dets = obj.get("annotations")
            if not isinstance(dets, list):
                raise InputError(
                    f"detections file '{self.path}' must be a COCO results list or a dict with an 'annotations' list"
                )
            for im in obj.get("images", []) or []:
                if isinstance(im, dict) and "id" in im and "file_name" in im:
                    self.names[Path(str(im["file_name"])).name] = im["id"]
            if categories is None and isinstance(obj.get("categories"), list) and obj["categories"]:
                categories = [c.get("id") for c in obj["categories"] if isinstance(c, dict)]
        elif isinstance(obj, list):
            dets = obj
        else:
            raise InputError(f"detections file '{self.path}' must hold a JSON list of detections")
        self.categories = None if categories is None else set(categories)
        self.score_required = isinstance(obj, list)
        self.detections = [self.check_entry(i, d) for i, d in enumerate(dets)]
        self.by_image: dict[Any, tuple[list[list[float]], list[float]]] = {}
        self.categories_by_image: dict[Any, list[int | None]] = {}
        for d in self.detections:
            key = d["image_id"] if "image_id" in d else Path(d["file_name"]).name
            boxes, scores = self.by_image.setdefault(key, ([], []))
            x, y, w, h = d["bbox"]
            boxes.append([x, y, x + w, y + h])
            scores.append(d["score"])
            self.categories_by_image.setdefault(key, []).append(d.get("category_id"))
        self.category_names: dict[int, str] = {}
        if isinstance(obj, dict):
            for c in obj.get("categories", []) or []:
                if isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str):
                    self.category_names[c["id"]] = c["name"]

    def check_entry(self, i: int, d: Any) -> dict[str, Any]:
        """Entry ``i`` of the file, checked against the rules above and normalised."""
        where = f"detections file '{self.path}': entry {i}"
        if not isinstance(d, dict) or "bbox" not in d or ("image_id" not in d and "file_name" not in d):
            raise InputError(f"{where} is not a detection", "each needs 'image_id' and 'bbox': [x, y, w, h]")
        out: dict[str, Any] = {}
        if "image_id" in d:
            if not _is_int(d["image_id"]):
                raise InputError(f"{where} has image_id {d['image_id']!r}", "image_id must be an integer")
            out["image_id"] = d["image_id"]
        elif isinstance(d["file_name"], str) and d["file_name"]:
            out["file_name"] = d["file_name"]
        else:
            raise InputError(f"{where} has file_name {d['file_name']!r}", "give an integer image_id or a file name")
        bbox = d["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_finite_number(v) for v in bbox)
                and bbox[2] >= 0 and bbox[3] >= 0):
            raise InputError(f"{where} has a bad bbox {bbox!r}", "expected [x, y, w, h]: finite numbers, w and h >= 0")
        out["bbox"] = [float(v) for v in bbox]
        if "score" not in d and self.score_required:
            raise InputError(f"{where} has no score", "a COCO results list gives every detection a 'score'")
        score = d.get("score", 1.0)
        if not _is_finite_number(score):
            raise InputError(f"{where} has score {score!r}", "the score must be a finite number")
        out["score"] = float(score)
        if "category_id" in d or self.categories is not None:
            cat = d.get("category_id")
            if not _is_int(cat):
                raise InputError(f"{where} has category_id {cat!r}", "category_id must be an integer")
            if self.categories is not None and cat not in self.categories:
                known = ", ".join(map(str, sorted(self.categories)[:10])) + (", …" if len(self.categories) > 10 else "")
                raise InputError(f"{where} has category_id {cat}, which is not a known category ({known})",
                                 "use the category ids of the annotation file")
            out["category_id"] = cat
        return out

    def image_key(self, image: int | str | None) -> Any:
        """Resolve an image id / file name (None: the file's only image) to a key."""
        if image is None:
            if len(self.by_image) > 1:
                raise InputError(
                    f"detections file '{self.path}' covers {len(self.by_image)} images; say which one"
                )
            return next(iter(self.by_image), None)
        if isinstance(image, str) and not image.isdigit():
            name = Path(image).name
            if name in self.names:
                return self.names[name]
            if name in self.by_image:
                return name
            stem = Path(name).stem
            if stem.isdigit():
                return int(stem)
            return name
        return int(image)

    def select(self, image: int | str | None) -> tuple[np.ndarray, np.ndarray]:
        """``(N×4 XYXY, N scores)`` for one image; empty when it has no detections."""
        key = self.image_key(image)
        boxes, scores = self.by_image.get(key, ([], []))
        return check_proposals(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores), str(self.path))

    def proposals(self, image: int | str | None) -> BoxesProposals:
        """One image's detections as a proposal source, with their category ids."""
        boxes, scores = self.select(image)
        return BoxesProposals(boxes, scores, self.categories_by_image.get(self.image_key(image)))

    def boxes_by_image(self) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
        """Every image's ``(N×4 XYXY, N scores)``, by descending score."""
        out = {}
        for key, (boxes, scores) in self.by_image.items():
            b, s = check_proposals(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), scores, str(self.path))
            order = np.argsort(-s, kind="stable")
            out[key] = (b[order], s[order])
        return out


class UnmatchedDetectionsWarning(UserWarning):
    """Some detections are for none of the images they were used with (they are ignored);
    the CLI prints it as one ``warning: …`` line."""


def check_matched(by_image: Mapping[Any, tuple[Sized, Sized]], used: Iterable[Any], source: str, images: str) -> None:
    """Detections for images that are not there are never silently dropped.

    Args:
        by_image: image key → (boxes, scores), e.g. :attr:`CocoDetections.by_image`.
        used: the keys of the images the detections are used with.
        source: the detections, for messages (e.g. the file).
        images: those images, for messages (e.g. ``"folder 'photos'"``).
    Raises:
        InputError: there are detections but none is for any of the images.
    Warns:
        UnmatchedDetectionsWarning: some are for none of them (with the counts).
    """
    used = set(used)
    unmatched = [k for k in by_image if k not in used]
    if not unmatched:
        return
    total = sum(len(scores) for _, scores in by_image.values())
    n = sum(len(by_image[k][1]) for k in unmatched)
    keys = ", ".join(map(str, unmatched[:3])) + (", …" if len(unmatched) > 3 else "")
    if len(unmatched) == len(by_image):
        raise InputError(
            f"none of the {total} detections in {source} is for {images} (they are for image {keys})",
            "use detections made for these images: they are matched by image_id, by the file's "
            "images[].file_name, or by a numeric file stem",
        )
    warnings.warn(
        f"{n} of {total} detections in {source} (for {len(unmatched)} image(s): {keys}) are for none of "
        f"{images}; they are not used",
        UnmatchedDetectionsWarning,
        stacklevel=2,
    )


class CocoDetectionsProposals(SourceBase):
    """Proposals for one image read from a COCO detections JSON (see :class:`CocoDetections`).

    Args:
        json_path: the file; parsed (and validated) when this object is made.
        image: ``image_id`` (int) or file name (str); None if the file has one image only.
    Attributes:
        boxes, scores, categories: that image's detections (``categories``: their
            ``category_id``, ``None`` when the file gives none).
    """

    def __init__(self, json_path: str | Path, image: int | str | None = None) -> None:
        self.detections = CocoDetections(json_path)
        source = self.detections.proposals(image)
        self.boxes, self.scores, self.categories = source.boxes, source.scores, source.categories

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.boxes, self.scores


class YoloProposals(SourceBase):
    """Boxes from an Ultralytics YOLO model (e.g. MobileSAMv2's ``ObjectAwareModel.pt``).

    Needs ``pip install ultralytics``; the weights must be a local file — nothing is
    downloaded. ``conf``/``iou`` are passed to YOLO's own filtering; the generator
    filters again with its own thresholds.
    """

    def __init__(self, weights_path: str | Path, conf: float = 0.4, iou: float = 0.9, imgsz: int = 1024, device: str | None = None) -> None:
        try:
            import ultralytics  # noqa: F401
        except ImportError:
            raise PocketSamError(
                "YoloProposals needs the optional 'ultralytics' package, which is not installed",
                "pip install 'pocketsam[yolo]', or pass boxes / a COCO detections file instead",
            ) from None
        path = Path(weights_path)
        if not path.is_file():
            raise InputError(f"YOLO weights '{path}' do not exist", "give the path of a local .pt file (nothing is downloaded)")
        from ultralytics import YOLO

        self.model = YOLO(str(path))
        self.conf, self.iou, self.imgsz, self.device = conf, iou, imgsz, device

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kwargs: dict[str, Any] = {"conf": self.conf, "iou": self.iou, "imgsz": self.imgsz, "verbose": False}
        if self.device is not None:
            kwargs["device"] = self.device
        result = self.model(image, **kwargs)[0]
        boxes = result.boxes.xyxy.detach().cpu().numpy()
        scores = result.boxes.conf.detach().cpu().numpy()
        return check_proposals(boxes, scores, "YOLO")


ProposalLike = Union[ProposalSource, Callable[[np.ndarray], Any], np.ndarray, list]


def as_proposal_source(source: Any) -> SourceBase:
    """A proposal source from a source, a callable, or an ``N×4`` box array."""
    if isinstance(source, SourceBase):
        return source
    if callable(source):
        return CallableProposals(source)
    if isinstance(source, (np.ndarray, list, tuple)):
        return BoxesProposals(source)
    if isinstance(source, torch.Tensor):
        return BoxesProposals(source.detach().cpu().numpy())
    raise TypeError(f"proposals must be a callable or an N×4 array of boxes, got {type(source).__name__}")


class HeadProposals(SourceBase):
    """Boxes from ``sam.proposal_head`` in original-image pixels.

    Args:
        head: a :class:`~pocketsam.models.proposal_head.ProposalHead`.
        top_k: the most proposals per image (before score filtering and NMS).
        min_score: the lowest centre score kept.
    """

    uses_embedding = True
    description = "the checkpoint's proposal head"

    def __init__(self, head: torch.nn.Module, top_k: int = 100, min_score: float = 0.05) -> None:
        self.head, self.top_k, self.min_score = head, top_k, min_score

    @property
    def score_thresh(self) -> float:
        """The score threshold the head was trained for (its recommendation to the generator),
        rounded to 4 decimals: it is stored in the head's dtype, e.g. fp16 on disk."""
        return round(float(self.head.score_thresh), 4)

    @torch.inference_mode()
    def from_predictor(self, predictor) -> tuple[np.ndarray, np.ndarray]:
        emb = predictor.get_image_embedding()
        head = self.head.to(emb.device).eval()
        out = head(emb.float())
        stride = predictor.model.img_size / out.shape[-1]
        boxes, scores = decode_boxes(out, stride, self.top_k, self.min_score)[0]
        boxes = predictor.pre.boxes_to_image(boxes, predictor.original_size)  # input frame → image pixels
        return boxes.cpu().double().numpy(), scores.cpu().double().numpy()

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise TypeError("HeadProposals reads the embedding: use it through ObjectAwareMaskGenerator")
