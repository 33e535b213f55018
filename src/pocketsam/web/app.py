"""The web app behind ``pocketsam serve`` (Starlette; run by uvicorn).

Routes (all JSON errors are ``{"error": "..."}`` with a 4xx status; the server keeps
serving after any bad request):

=============================================  ==============================================
``GET  /``                                     the page (``static/index.html``)
``GET  /static/...``                           page assets (Starlette's StaticFiles: no path
                                               traversal, no symlinks followed)
``GET  /api/config``                           model and limits; whether the browser decodes
``GET  /api/decoder.onnx``                     the model's SAM-interface decoder (exported once,
                                               cached under ``$POCKETSAM_CACHE/serve``)
``POST /api/images``                           raw image bytes (≤ ``max_upload_bytes``) → ``id``
                                               (SHA-256 of the bytes), size; embeds it once
``GET  /api/images/{id}/embedding``            float32 embedding, C-order (shape in
                                               ``X-Embedding-Shape``)
``GET  /api/images/{id}/image.png``            the decoded image (for formats browsers lack)
``POST /api/images/{id}/decode``               ``{points, labels, box}`` → COCO RLE mask + score
                                               (server-side decoding, the same decoder module)
``POST /api/images/{id}/everything``           all masks (hierarchical, or the proposal head's
                                               boxes) as COCO RLE
``POST /api/images/{id}/export?format=coco``   objects (uncompressed RLE) → COCO JSON download
``POST /api/images/{id}/export?format=png``    objects → ZIP of mask PNGs
=============================================  ==============================================

Image ids are 64 hex digits and only ever key an in-memory cache, so no request names a
file. Uploads are decoded by :func:`pocketsam.io.load_image` (decompression-bomb guard:
``max_pixels``). Model work runs in worker threads under one lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketsam.errors import InputError, PocketSamError
from pocketsam.everything.modes import make_generator, model_mode
from pocketsam.export.onnx_sam import export_decoder
from pocketsam.io import load_image, loads_json, to_pil
from pocketsam.masks import area_from_rle, coco_encode_rle, encode_rle, mask_bbox_xywh, rle_to_mask
from pocketsam.predictor import SamPredictor
from pocketsam.prompts import Prompts, check_prompts_inside, predict_prompt
from pocketsam.runtime.onnx import default_cache_dir, model_hash
from pocketsam.version import __version__
from pocketsam.web import STATIC_DIR, browser_decoder_assets

MiB = 1 << 20
log = logging.getLogger("pocketsam.serve")
ID_RE = re.compile(r"[0-9a-f]{64}")
MAX_POINTS = 64
MAX_OBJECTS = 1000


@dataclass
class ServeSettings:
    """Limits and options of one server."""

    max_upload_bytes: int = 20 * MiB
    max_pixels: int = 50_000_000
    cache_images: int = 8
    decoder: str = "auto"  # "auto": in the browser when onnxruntime-web is installed; "server"
    max_everything_masks: int = 256
    #: most full-size mask pixels (pixels × masks) one everything or PNG export request may
    #: produce; about 16 s of work on a laptop core (COCO export works on the RLE runs and is
    #: bounded by max_upload_bytes instead)
    max_work_pixels: int = 4_000_000_000
    checkpoint_name: str = "bundled model"
    #: one line the page shows under the model's name (serve sets the bundled model's note)
    model_note: str | None = None


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ImageEntry:
    id: str
    name: str
    width: int
    height: int
    embedding: np.ndarray  # 1×C×h×w float32
    data: bytes  # the upload, for "everything" (which re-embeds in its generator)
    seconds: float


class Engine:
    """The model, its exported decoder, and the embedding cache. Thread-safe."""

    def __init__(self, sam: Any, settings: ServeSettings, onnx_dir: Path | None = None) -> None:
        self.sam = sam.eval()
        self.settings = settings
        self.predictor = SamPredictor(sam)
        self.lock = threading.Lock()  # model work, one at a time
        self.cache_lock = threading.Lock()
        self.cache: OrderedDict[str, ImageEntry] = OrderedDict()
        self.progress: dict[str, Progress] = {}  # image id → its latest everything run
        self.tmp = Path(tempfile.mkdtemp(prefix="pocketsam-serve-"))
        self.decoder_path: Path | None = None
        self.decoder_error: str | None = None
        self.onnx_dir = onnx_dir
        self.encoder_seconds = 1.0

    # ------------------------------------------------------------------ set-up
    def prepare(self, log=print) -> None:
        """Export the browser decoder (once per model, cached) and time one encoder run."""
        if self.settings.decoder != "server":
            self.decoder_path = self._export_decoder(log)
        image = np.full((self.sam.img_size, self.sam.img_size, 3), 127, np.uint8)
        with self.lock:
            for _ in range(2):  # the first run builds the inference copy; time the second
                start = time.perf_counter()
                self.predictor.set_image(image)
                self.predictor.reset_image()
                self.encoder_seconds = time.perf_counter() - start

    def _export_decoder(self, log) -> Path | None:
        import importlib.util

        if importlib.util.find_spec("onnx") is None:
            self.decoder_error = "the onnx package is not installed (pip install 'pocketsam[onnx]')"
            return None

        folder = Path(self.onnx_dir) if self.onnx_dir else default_cache_dir().parent / "serve"
        path = folder / model_hash(self.sam)[:24] / "decoder.onnx"
        if not path.exists():
            log(f"exporting the decoder to ONNX for the browser ({path}) …")
            try:
                export_decoder(self.sam, path)
            except Exception as exc:  # noqa: BLE001 — fall back to server-side decoding
                self.decoder_error = f"the decoder could not be exported to ONNX ({type(exc).__name__}: {exc})"
                return None
        return path

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ images
    def get(self, image_id: str) -> ImageEntry:
        if not ID_RE.fullmatch(image_id):
            raise HTTPError(404, "unknown image id")
        with self.cache_lock:
            entry = self.cache.get(image_id)
            if entry is not None:
                self.cache.move_to_end(image_id)
        if entry is None:
            raise HTTPError(404, "this image is no longer on the server (it keeps the most recent "
                                 f"{self.settings.cache_images}); open it again")
        return entry

    def add_image(self, data: bytes, name: str) -> tuple[ImageEntry, bool]:
        """Decode, check and embed an upload; cached by the SHA-256 of its bytes.

        Returns:
            (entry, cached) — ``cached`` when the embedding was already there.
        Raises:
            InputError: not an image, corrupt, too many pixels.
        """
        image_id = hashlib.sha256(data).hexdigest()
        with self.cache_lock:
            if image_id in self.cache:
                self.cache.move_to_end(image_id)
                return self.cache[image_id], True
        image = self._load(data, name)
        with self.lock:
            with self.cache_lock:  # another request may have embedded it meanwhile
                if image_id in self.cache:
                    return self.cache[image_id], True
            start = time.perf_counter()
            self.predictor.set_image(image)
            embedding = self.predictor.get_image_embedding().detach().cpu().float().numpy().copy()
            self.predictor.reset_image()
            seconds = time.perf_counter() - start
        entry = ImageEntry(image_id, name, int(image.shape[1]), int(image.shape[0]), embedding, data, seconds)
        with self.cache_lock:
            self.cache[image_id] = entry
            while len(self.cache) > max(1, self.settings.cache_images):
                dropped, _ = self.cache.popitem(last=False)
                self.progress.pop(dropped, None)
        return entry, False

    def _load(self, data: bytes, name: str) -> np.ndarray:
        path = self.tmp / f"{uuid.uuid4().hex}.upload"
        path.write_bytes(data)
        try:
            return load_image(path, max_pixels=self.settings.max_pixels)
        except InputError as exc:
            raise InputError(str(exc).replace(f"'{path}'", f"'{name}'").replace(str(path), name)) from None
        finally:
            path.unlink(missing_ok=True)

    def image_array(self, entry: ImageEntry) -> np.ndarray:
        return self._load(entry.data, entry.name)

    # ------------------------------------------------------------------ masks
    def decode(self, entry: ImageEntry, points: list, labels: list, box: list | None) -> tuple[np.ndarray, float]:
        """The mask for these prompts (original-image pixels), decoded through the predictor
        on the cached embedding under pocketsam's one click rule (:mod:`pocketsam.prompts`:
        one click → the best of the three multimask outputs, several points or a box → the
        single-mask output), as ``pocketsam segment`` and the browser's decoder.onnx."""

        with self.lock:
            self.predictor.set_embedding(entry.embedding, (entry.height, entry.width))
            try:
                masks, scores, _ = predict_prompt(
                    self.predictor,
                    np.asarray(points, np.float64).reshape(-1, 2) if points else None,
                    np.asarray(labels, np.int64) if points else None,
                    np.asarray(box, np.float64) if box is not None else None)
            finally:
                self.predictor.reset_image()
        return masks[0], float(scores[0])

    def everything(self, entry: ImageEntry) -> tuple[str, list[dict[str, Any]], float]:
        """All masks of the image (the model's everything mode); :meth:`progress` reports
        the prompts decoded meanwhile."""
        mode = model_mode(self.sam)
        image = self.image_array(entry)
        start = time.perf_counter()
        progress = Progress()
        with self.lock:
            with self.cache_lock:
                self.progress[entry.id] = progress
            generator = make_generator(mode, self.predictor, output_mode="coco_rle")  # its inference copy
            generator.progress = progress.update
            try:
                records = generator.generate(image)
            finally:
                progress.finished = True
        records = sorted(records, key=lambda r: -r["area"])[: self.settings.max_everything_masks]
        out = [{"segmentation": r["segmentation"], "bbox": [float(v) for v in r["bbox"]], "area": int(r["area"]),
                "score": float(r.get("predicted_iou", r.get("score", 0.0)))} for r in records]
        return mode, out, time.perf_counter() - start

    def progress_of(self, image_id: str) -> dict[str, Any]:
        """How far the latest everything run of this image is (prompts decoded of those
        known so far: a later pass or crop adds its prompts when it starts)."""
        with self.cache_lock:
            p = self.progress.get(image_id)
        if p is None:
            return {"running": False, "done": 0, "total": 0, "fraction": 0.0, "seconds": 0.0}
        return p.as_dict()


class Progress:
    """Prompts decoded by one everything run, from the generator's progress hook (called in
    its worker thread; plain ints and a bool, so reads from another thread need no lock)."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0
        self.finished = False
        self.start = time.perf_counter()

    def update(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)

    def as_dict(self) -> dict[str, Any]:
        fraction = 1.0 if self.finished else (self.done / self.total if self.total else 0.0)
        return {"running": not self.finished, "done": self.done, "total": self.total,
                "fraction": round(min(1.0, fraction), 4), "seconds": round(time.perf_counter() - self.start, 3)}


# --------------------------------------------------------------------------- helpers
def _number(v: Any) -> float | None:
    """A JSON number as a finite float, else None: booleans, strings, NaN/±Infinity (which
    Python's json accepts) and integers too large for a float (a 400-digit coordinate) are
    not numbers here."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def parse_prompts(body: Any, width: int, height: int) -> tuple[list, list, list | None]:
    """Validate ``{"points": [[x, y], ...], "labels": [1|0, ...], "box": [x0, y0, x1, y1] | null}``
    (original-image pixels) with the CLI's rules (``pocketsam segment``: points on a pixel,
    boxes inside the image and not inverted, something in the foreground). Raises
    HTTPError 400 with what is wrong."""

    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    points, labels, box = body.get("points") or [], body.get("labels") or [], body.get("box")
    if not isinstance(points, list) or not isinstance(labels, list) or len(points) != len(labels):
        raise HTTPError(400, "points and labels must be lists of the same length")
    if len(points) > MAX_POINTS:
        raise HTTPError(400, f"at most {MAX_POINTS} points per object")
    xy = []
    for p in points:
        values = [_number(v) for v in p] if isinstance(p, list) and len(p) == 2 else [None]
        if None in values:
            raise HTTPError(400, "each point must be [x, y] with finite numbers")
        xy.append(tuple(values))
    if any(isinstance(lab, bool) or lab not in (0, 1) for lab in labels):
        raise HTTPError(400, "labels must be 1 (foreground) or 0 (background)")
    corners = None
    if box is not None:
        corners = [_number(v) for v in box] if isinstance(box, list) and len(box) == 4 else [None]
        if None in corners:
            raise HTTPError(400, "box must be [x0, y0, x1, y1] with finite numbers")
        if not (corners[0] < corners[2] and corners[1] < corners[3]):
            raise HTTPError(400, f"box {corners} is empty or inverted (need x1 > x0 and y1 > y0)")
    if box is None and 1 not in labels:
        raise HTTPError(400, "give a foreground point or a box")
    prompts = Prompts()
    prompts.points, prompts.labels = xy, [int(lab) for lab in labels]
    prompts.boxes = [tuple(corners)] if corners is not None else []
    try:
        check_prompts_inside(prompts, width, height)
    except InputError as exc:
        raise HTTPError(400, str(exc)) from None
    return [list(p) for p in xy], prompts.labels, corners


def parse_objects(body: Any, width: int, height: int) -> list[dict[str, Any]]:
    """Validate ``{"objects": [{"counts": [run lengths], "score": s?, "name": str?}, ...]}``:
    uncompressed COCO RLE (column-major runs, zeros first) of masks of this image."""
    if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
        raise HTTPError(400, 'the request body must be {"objects": [...]}')
    objects = body["objects"]
    if len(objects) > MAX_OBJECTS:
        raise HTTPError(400, f"at most {MAX_OBJECTS} objects")
    out = []
    for i, obj in enumerate(objects):
        counts = obj.get("counts") if isinstance(obj, dict) else None
        if not isinstance(counts, list) or not counts or len(counts) > width * height + 1 or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise HTTPError(400, f"object {i + 1}: counts must be a list of non-negative run lengths")
        if sum(counts) != width * height:
            raise HTTPError(400, f"object {i + 1}: run lengths sum to {sum(counts)}, not {width}x{height}")
        score = obj.get("score")
        name = obj.get("name")
        out.append({"rle": {"size": [height, width], "counts": counts},
                    "score": _number(score),
                    "name": str(name)[:200] if isinstance(name, str) else f"object {i + 1}"})
    return out


def coco_document(entry: ImageEntry, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A COCO instances document for one image: compressed RLE via pocketsam.masks. Area and
    box come from the run lengths (pycocotools), so the work is proportional to the size of
    the request, never to pixels × objects."""
    from pycocotools import mask as mask_utils


    annotations = []
    for i, obj in enumerate(objects, start=1):
        segmentation = coco_encode_rle(obj["rle"])
        box = mask_utils.toBbox({"size": segmentation["size"], "counts": segmentation["counts"].encode()})
        ann = {"id": i, "image_id": 1, "category_id": 1, "segmentation": segmentation,
               "area": area_from_rle(obj["rle"]), "bbox": [int(round(v)) for v in box], "iscrowd": 0,
               "name": obj["name"]}
        if obj["score"] is not None:
            ann["score"] = obj["score"]
        annotations.append(ann)
    return {
        "info": {"description": "pocketsam serve", "version": __version__,
                 "date_created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "images": [{"id": 1, "file_name": entry.name, "width": entry.width, "height": entry.height,
                    "sha256": entry.id}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
    }


def png_zip(objects: list[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i, obj in enumerate(objects):
            png = io.BytesIO()
            to_pil(rle_to_mask(obj["rle"])).save(png, format="PNG", optimize=False)
            zf.writestr(f"mask_{i}.png", png.getvalue())
    return buf.getvalue()


def content_disposition(filename: str) -> str:
    """``attachment`` with the file name as RFC 6266 / RFC 5987 give it: an ASCII fallback
    (``filename=``, non-ASCII as ``_``) for old clients and the exact UTF-8 name
    (``filename*=UTF-8''…``, percent-encoded) for the others. HTTP headers are Latin-1, so
    a Cyrillic or CJK name cannot go in ``filename=`` as it is."""
    from urllib.parse import quote

    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in filename) or "download"
    header = f'attachment; filename="{fallback}"'
    if fallback != filename:
        header += f"; filename*=UTF-8''{quote(filename.encode('utf-8', 'replace'), safe='')}"
    return header


def check_work(objects: int, entry: ImageEntry, settings: ServeSettings, doing: str, hint: str) -> None:
    """Refuse a request whose work (full-size masks: pixels × masks) exceeds the server's
    limit, with the numbers, before doing any of it (a 250-byte request could otherwise ask
    for ten 49-megapixel masks)."""
    work = objects * entry.width * entry.height
    if work > settings.max_work_pixels:
        raise HTTPError(422, f"{doing} {objects} mask(s) of this {entry.width}x{entry.height} image: "
                             f"{work / 1e6:,.0f} megapixels of full-size masks, over this server's limit of "
                             f"{settings.max_work_pixels / 1e6:,.0f} per request (pocketsam serve --max-work-mpix); "
                             f"{hint}")


def safe_name(name: str) -> str:
    """A display/file name from the client: base name only, printable, ≤ 100 characters."""
    name = os.path.basename(name.replace("\\", "/")).strip()
    name = "".join(c for c in name if c.isprintable() and c not in '"<>|:*?')[:100]
    return name or "image"


# --------------------------------------------------------------------------- the app
def create_app(engine: Engine, allowed_hosts: list[str] | None = None):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    settings = engine.settings
    browser = settings.decoder != "server" and engine.decoder_path is not None and browser_decoder_assets()

    heavy = asyncio.Semaphore(1)  # PNG exports build full-size masks: one at a time

    async def read_body(request: Request, limit: int) -> bytes:
        too_large = f"the upload is larger than the server's limit of {limit / MiB:.6g} MiB"
        length = request.headers.get("content-length")
        if length is not None and (not re.fullmatch(r"[0-9]{1,18}", length) or int(length) > limit):
            raise HTTPError(413, too_large)
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPError(413, too_large)
                chunks.append(chunk)
        except ClientDisconnect:
            # the browser went away mid-upload (tab closed, upload cancelled): nothing to
            # answer and nothing wrong with the server, so one debug line, no traceback
            log.debug("client disconnected during %s %s after %d bytes", request.method, request.url.path, size)
            raise HTTPError(400, "the client disconnected before the request body was complete") from None
        return b"".join(chunks)

    async def read_json(request: Request) -> Any:

        data = await read_body(request, settings.max_upload_bytes)
        try:
            return loads_json(data, "the request body")
        except InputError as exc:  # not JSON, nested too deeply, an over-long integer...
            raise HTTPError(400, exc.what) from None

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        sam = engine.sam
        why = None
        if not browser:
            if settings.decoder == "server":
                why = "server-side decoding was chosen (--decoder server)"
            elif engine.decoder_path is None:
                why = engine.decoder_error or "no ONNX decoder"
            else:
                why = "onnxruntime-web is not installed (run `make web`, see the README)"
        return JSONResponse({
            "model": settings.checkpoint_name,
            "input_size": int(sam.img_size),
            "embedding_shape": [1, int(sam.prompt_encoder.embed_dim), *map(int, sam.prompt_encoder.image_embedding_size)],
            "low_res_mask_size": list(map(int, sam.prompt_encoder.mask_input_size)),
            "mask_threshold": float(sam.mask_threshold),
            "browser_decoder": browser,
            "browser_decoder_unavailable": why,
            "decoder_url": "/api/decoder.onnx" if browser else None,
            "everything_mode": model_mode(sam),
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_pixels,
            "encoder_seconds": round(engine.encoder_seconds, 3),
            "model_note": settings.model_note,
            "max_work_pixels": settings.max_work_pixels,
        })

    async def decoder_onnx(request: Request) -> Response:
        if engine.decoder_path is None or not engine.decoder_path.exists():
            raise HTTPError(404, engine.decoder_error or "no ONNX decoder (server-side decoding)")
        return FileResponse(engine.decoder_path, media_type="application/octet-stream",
                            headers={"Cache-Control": "no-cache"})

    async def upload(request: Request) -> Response:
        data = await read_body(request, settings.max_upload_bytes)
        if not data:
            raise HTTPError(400, "the upload is empty")
        name = safe_name(request.query_params.get("name", "image"))
        entry, cached = await run_in_threadpool(engine.add_image, data, name)
        return JSONResponse({"id": entry.id, "name": entry.name, "width": entry.width, "height": entry.height,
                             "cached": cached, "seconds": round(entry.seconds, 3)})

    async def embedding(request: Request) -> Response:
        entry = engine.get(request.path_params["image_id"])
        return Response(entry.embedding.tobytes(), media_type="application/octet-stream", headers={
            "X-Embedding-Shape": ",".join(map(str, entry.embedding.shape)), "Cache-Control": "private, max-age=3600"})

    async def image_png(request: Request) -> Response:
        """The image as the model sees it (EXIF-rotated RGB), for formats a browser cannot show."""
        entry = engine.get(request.path_params["image_id"])

        def render() -> bytes:
            buf = io.BytesIO()
            to_pil(engine.image_array(entry)).save(buf, format="PNG", compress_level=1)
            return buf.getvalue()

        return Response(await run_in_threadpool(render), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    async def decode(request: Request) -> Response:
        entry = engine.get(request.path_params["image_id"])
        points, labels, box = parse_prompts(await read_json(request), entry.width, entry.height)
        mask, score = await run_in_threadpool(engine.decode, entry, points, labels, box)

        return JSONResponse({"segmentation": encode_rle(mask), "score": score, "area": int(mask.sum()),
                             "bbox": mask_bbox_xywh(mask)})

    async def everything(request: Request) -> Response:
        entry = engine.get(request.path_params["image_id"])
        check_work(settings.max_everything_masks, entry, settings, "Everything would keep up to",
                   "open a smaller copy of the image for Everything")
        mode, masks, seconds = await run_in_threadpool(engine.everything, entry)
        return JSONResponse({"mode": mode, "masks": masks, "seconds": round(seconds, 3)})

    async def everything_progress(request: Request) -> Response:
        """How far the image's running (or latest) Everything is, for the page to poll."""
        entry = engine.get(request.path_params["image_id"])
        return JSONResponse(engine.progress_of(entry.id), headers={"Cache-Control": "no-store"})

    async def export(request: Request) -> Response:
        entry = engine.get(request.path_params["image_id"])
        fmt = request.query_params.get("format", "coco")
        if fmt not in ("coco", "png"):
            raise HTTPError(400, "format must be coco or png")
        objects = parse_objects(await read_json(request), entry.width, entry.height)
        stem = Path(entry.name).stem or "image"
        if fmt == "coco":
            doc = await run_in_threadpool(coco_document, entry, objects)
            return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json",
                            headers={"Content-Disposition": content_disposition(f"{stem}_coco.json")})
        check_work(len(objects), entry, settings, "the PNG export would draw",
                   "download COCO JSON instead (its size does not depend on the image's), or fewer objects")
        async with heavy:
            data = await run_in_threadpool(png_zip, objects)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": content_disposition(f"{stem}_masks.zip")})

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPError):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        if isinstance(exc, PocketSamError):
            return JSONResponse({"error": str(exc)}, status_code=400)
        from starlette.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        print(f"pocketsam serve: internal error on {request.method} {request.url.path}:", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server keeps running"},
                            status_code=500)

    class SecurityHeaders:
        """Cross-origin isolation (lets onnxruntime-web use threads), no sniffing, no framing."""

        def __init__(self, app) -> None:
            self.app = app

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] != "http":
                return await self.app(scope, receive, send)

            async def send_with_headers(message) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    headers += [(b"cross-origin-opener-policy", b"same-origin"),
                                (b"cross-origin-embedder-policy", b"require-corp"),
                                (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                                (b"referrer-policy", b"no-referrer")]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_headers)

    api_id = "/api/images/{image_id}"
    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/decoder.onnx", decoder_onnx),
        Route("/api/images", upload, methods=["POST"]),
        Route(api_id + "/embedding", embedding),
        Route(api_id + "/image.png", image_png),
        Route(api_id + "/decode", decode, methods=["POST"]),
        Route(api_id + "/everything", everything, methods=["POST"]),
        Route(api_id + "/everything/progress", everything_progress),
        Route(api_id + "/export", export, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    handlers = {Exception: http_error, HTTPError: http_error, PocketSamError: http_error}
    from starlette.exceptions import HTTPException

    handlers[HTTPException] = http_error
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.engine = engine
    app.state.browser_decoder = browser
    return app


def loopback_hosts() -> list[str]:
    return ["127.0.0.1", "localhost", "::1", "[::1]"]


__all__ = ["Engine", "ServeSettings", "coco_document", "create_app", "parse_objects", "parse_prompts"]
