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

import hashlib
import io
import json
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
from pocketsam.web import STATIC_DIR, browser_decoder_assets

MiB = 1 << 20
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
    checkpoint_name: str = "bundled model"


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
        import torch

        from pocketsam.predictor import SamPredictor

        self.sam = sam.eval()
        self.settings = settings
        self.predictor = SamPredictor(sam)
        self.multimask_only = bool(getattr(sam.mask_decoder, "multimask_only", False))
        self.lock = threading.Lock()  # model work, one at a time
        self.cache_lock = threading.Lock()
        self.cache: OrderedDict[str, ImageEntry] = OrderedDict()
        self.tmp = Path(tempfile.mkdtemp(prefix="pocketsam-serve-"))
        self.decoder_path: Path | None = None
        self.decoder_error: str | None = None
        self.onnx_dir = onnx_dir
        self.encoder_seconds = 1.0
        self._torch = torch

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
        from pocketsam.export.onnx_sam import export_decoder
        from pocketsam.runtime.onnx import default_cache_dir, model_hash

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
                self.cache.popitem(last=False)
        return entry, False

    def _load(self, data: bytes, name: str) -> np.ndarray:
        from pocketsam.io import load_image

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
        """The mask the browser's decoder.onnx gives for these prompts (SAM's ONNX rule: the
        best of the three multimask outputs for one click or a box alone, else the
        single-mask output; TinySAM: always its best multimask output), computed on the
        cached embedding with the predictor's fast decoder and mask upsampling."""
        torch = self._torch
        from pocketsam.masks import upsample_logits
        from pocketsam.preprocess import ResizeLongestSide

        size = (entry.height, entry.width)
        transform = ResizeLongestSide(self.sam.img_size)
        coords = torch.as_tensor(transform.apply_coords(np.asarray(points, np.float64).reshape(-1, 2), size),
                                 dtype=torch.float32)[None]
        labs = torch.as_tensor(labels, dtype=torch.int64).reshape(1, -1)
        boxes = None
        if box is not None:
            boxes = torch.as_tensor(transform.apply_boxes(np.asarray(box, np.float64), size), dtype=torch.float32)
        # SAM's ONNX models count the padding point or the box's two corners as points
        num_points = len(points) + (2 if box is not None else 1)
        multimask = self.multimask_only or num_points <= 2
        input_size = transform.get_preprocess_shape(*size, self.sam.img_size)
        with self.lock, torch.inference_mode():
            engine = self.predictor.engine
            sparse, dense = engine.prompt_encoder((coords, labs) if len(points) else None, boxes, None)
            low_res, iou = engine.mask_decoder(torch.from_numpy(entry.embedding), engine.prompt_encoder.get_dense_pe(),
                                               sparse, dense, multimask)
            best = int(torch.argmax(iou[0]))
            masks = upsample_logits(low_res[:, best:best + 1], input_size, size, self.sam.img_size)
        return (masks[0, 0] > self.sam.mask_threshold).numpy(), float(iou[0, best])

    def everything(self, entry: ImageEntry) -> tuple[str, list[dict[str, Any]], float]:
        mode = model_mode(self.sam)
        image = self.image_array(entry)
        start = time.perf_counter()
        with self.lock:
            generator = make_generator(mode, self.predictor, output_mode="coco_rle")  # its inference copy
            records = generator.generate(image)
        records = sorted(records, key=lambda r: -r["area"])[: self.settings.max_everything_masks]
        out = [{"segmentation": r["segmentation"], "bbox": [float(v) for v in r["bbox"]], "area": int(r["area"]),
                "score": float(r.get("predicted_iou", r.get("score", 0.0)))} for r in records]
        return mode, out, time.perf_counter() - start


# --------------------------------------------------------------------------- helpers
def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_prompts(body: Any, width: int, height: int) -> tuple[list, list, list | None]:
    """Validate ``{"points": [[x, y], ...], "labels": [1|0, ...], "box": [x0, y0, x1, y1] | null}``
    (original-image pixels). Raises HTTPError 400 with what is wrong."""
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    points, labels, box = body.get("points") or [], body.get("labels") or [], body.get("box")
    if not isinstance(points, list) or not isinstance(labels, list) or len(points) != len(labels):
        raise HTTPError(400, "points and labels must be lists of the same length")
    if len(points) > MAX_POINTS:
        raise HTTPError(400, f"at most {MAX_POINTS} points per object")
    for p in points:
        if not (isinstance(p, list) and len(p) == 2 and all(_finite_number(v) for v in p)):
            raise HTTPError(400, "each point must be [x, y] with finite numbers")
        if not (0 <= p[0] < width and 0 <= p[1] < height):
            raise HTTPError(400, f"point {p} is outside the {width}x{height} image")
    if any(lab not in (0, 1) or isinstance(lab, bool) for lab in labels):
        raise HTTPError(400, "labels must be 1 (foreground) or 0 (background)")
    if box is not None:
        if not (isinstance(box, list) and len(box) == 4 and all(_finite_number(v) for v in box)):
            raise HTTPError(400, "box must be [x0, y0, x1, y1] with finite numbers")
        if not (0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height):
            raise HTTPError(400, f"box {box} is empty or outside the {width}x{height} image")
    if box is None and 1 not in labels:
        raise HTTPError(400, "give a foreground point or a box")
    return points, labels, box


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
                    "score": float(score) if _finite_number(score) else None,
                    "name": str(name)[:200] if isinstance(name, str) else f"object {i + 1}"})
    return out


def coco_document(entry: ImageEntry, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A COCO instances document for one image: compressed RLE via pocketsam.masks."""
    import pocketsam
    from pocketsam.masks import area_from_rle, coco_encode_rle, mask_bbox_xywh, rle_to_mask

    annotations = []
    for i, obj in enumerate(objects, start=1):
        mask = rle_to_mask(obj["rle"])
        ann = {"id": i, "image_id": 1, "category_id": 1, "segmentation": coco_encode_rle(obj["rle"]),
               "area": area_from_rle(obj["rle"]), "bbox": mask_bbox_xywh(mask), "iscrowd": 0,
               "name": obj["name"]}
        if obj["score"] is not None:
            ann["score"] = obj["score"]
        annotations.append(ann)
    return {
        "info": {"description": "pocketsam serve", "version": pocketsam.__version__,
                 "date_created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "images": [{"id": 1, "file_name": entry.name, "width": entry.width, "height": entry.height,
                    "sha256": entry.id}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
    }


def png_zip(objects: list[dict[str, Any]]) -> bytes:
    from pocketsam.io import to_pil
    from pocketsam.masks import rle_to_mask

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i, obj in enumerate(objects):
            png = io.BytesIO()
            to_pil(rle_to_mask(obj["rle"])).save(png, format="PNG", optimize=False)
            zf.writestr(f"mask_{i}.png", png.getvalue())
    return buf.getvalue()


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
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    settings = engine.settings
    browser = settings.decoder != "server" and engine.decoder_path is not None and browser_decoder_assets()

    async def read_body(request: Request, limit: int) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise HTTPError(413, f"the upload is larger than the server's limit of {limit / MiB:.0f} MiB")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"the upload is larger than the server's limit of {limit / MiB:.0f} MiB")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(request: Request) -> Any:
        data = await read_body(request, settings.max_upload_bytes)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(400, "the request body is not valid JSON") from None

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
            from pocketsam.io import to_pil

            buf = io.BytesIO()
            to_pil(engine.image_array(entry)).save(buf, format="PNG", compress_level=1)
            return buf.getvalue()

        return Response(await run_in_threadpool(render), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    async def decode(request: Request) -> Response:
        entry = engine.get(request.path_params["image_id"])
        points, labels, box = parse_prompts(await read_json(request), entry.width, entry.height)
        mask, score = await run_in_threadpool(engine.decode, entry, points, labels, box)
        from pocketsam.masks import encode_rle, mask_bbox_xywh

        return JSONResponse({"segmentation": encode_rle(mask), "score": score, "area": int(mask.sum()),
                             "bbox": mask_bbox_xywh(mask)})

    async def everything(request: Request) -> Response:
        entry = engine.get(request.path_params["image_id"])
        mode, masks, seconds = await run_in_threadpool(engine.everything, entry)
        return JSONResponse({"mode": mode, "masks": masks, "seconds": round(seconds, 3)})

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
                            headers={"Content-Disposition": f'attachment; filename="{stem}_coco.json"'})
        data = await run_in_threadpool(png_zip, objects)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{stem}_masks.zip"'})

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
