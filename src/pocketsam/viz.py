"""Overlay drawing shared by every pocketsam CLI.

* :func:`overlay_masks` tints each mask in its own colour and outlines it. It composes
  any number of masks in a constant number of full-image passes: masks are painted into
  one label map, largest first, so smaller masks stay visible on top of larger ones; the
  tint and the outlines are then computed from that label map.
* :func:`draw_prompts` draws the prompts SAM was given: a green star for each
  foreground point, a red circle for each background point, and box rectangles.
* :func:`palette` gives the distinct colours used for masks.

All functions take and return ``uint8`` H×W×3 RGB arrays and never modify their input.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from pocketsam.masks import decode_rle

POSITIVE_COLOR = (40, 220, 60)
NEGATIVE_COLOR = (235, 40, 40)
BOX_COLOR = (40, 220, 60)
MARKER_EDGE = (255, 255, 255)

_GOLDEN = 0.6180339887498949


def palette(n: int, seed_hue: float = 0.58) -> np.ndarray:
    """``n`` visually distinct colours.

    Hues step by the golden ratio (so consecutive colours are far apart on the colour
    wheel, and any prefix is well spread); saturation and value alternate between three
    levels to separate colours whose hues end up close. The first colour is a clear blue.

    Returns:
        ``uint8`` array of shape n×3 (RGB).
    """
    i = np.arange(n, dtype=np.float64)
    h = (seed_hue + i * _GOLDEN) % 1.0
    s = np.array([0.75, 0.95, 0.55])[np.arange(n) % 3]
    v = np.array([0.95, 0.80, 1.00])[(np.arange(n) // 3) % 3]
    return _hsv_to_rgb(h, s, v)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (each in [0, 1]) → ``uint8`` RGB, shape N×3."""
    h6 = h * 6.0
    sector = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack(
        [
            np.stack([v, t, p], -1),
            np.stack([q, v, p], -1),
            np.stack([p, v, t], -1),
            np.stack([p, q, v], -1),
            np.stack([t, p, v], -1),
            np.stack([v, p, q], -1),
        ],
        0,
    )  # 6×N×3
    rgb = table[sector, np.arange(len(h))]
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def _as_mask_stack(masks: Any, hw: tuple[int, int]) -> np.ndarray:
    """Normalise the accepted mask inputs to a bool array N×H×W.

    Accepts an H×W or N×H×W array (bool, or numeric: nonzero = inside), a sequence of
    H×W arrays, or a sequence of SAM-style records ``{"segmentation": array or COCO RLE}``.
    """
    if isinstance(masks, np.ndarray) or (hasattr(masks, "numpy") and hasattr(masks, "shape")):
        arr = np.asarray(masks)
        if arr.ndim == 2:
            arr = arr[None]
    else:
        items = list(masks)
        if not items:
            return np.zeros((0, *hw), bool)
        layers = []
        for m in items:
            if isinstance(m, dict):
                seg = m["segmentation"]
                if isinstance(seg, dict):
                    seg = decode_rle(seg)
                m = seg
            layers.append(np.asarray(m))
        arr = np.stack(layers)
    if arr.ndim != 3 or arr.shape[1:] != hw:
        raise ValueError(f"masks must be N×{hw[0]}×{hw[1]} to match the image, got {arr.shape}")
    return arr if arr.dtype == bool else arr != 0


def overlay_masks(
    image: np.ndarray,
    masks: Any,
    colors: Sequence[Sequence[int]] | np.ndarray | None = None,
    alpha: float = 0.5,
    outlines: bool = True,
    outline_width: int | None = None,
) -> np.ndarray:
    """Tint ``masks`` over ``image``, each in its own colour.

    Where masks overlap, the smaller mask is drawn on top (masks are painted in order of
    decreasing area), so nested parts stay visible. The cost is a few passes over N×H×W
    bools plus O(H·W) work, so hundreds of masks take well under a second at 1024².

    Args:
        image: ``uint8`` H×W×3 RGB.
        masks: N×H×W (or H×W) bool array, a list of H×W arrays, or a list of records with
            a ``"segmentation"`` (array or COCO RLE), as automatic mask generators return.
        colors: N×3 RGB colours, one per mask, in the order given; default
            :func:`palette`.
        alpha: opacity of the tint, 0 (invisible) .. 1 (opaque).
        outlines: draw each visible mask region's boundary in its colour, fully opaque.
        outline_width: outline thickness in pixels; default scales with the image
            (1 px up to ~500 px on the short side, then 1 px more per 500 px).
    Returns:
        new ``uint8`` H×W×3 array.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 H×W×3, got {img.dtype} {img.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    h, w = img.shape[:2]
    stack = _as_mask_stack(masks, (h, w))
    n = len(stack)
    if n == 0:
        return img.copy()
    if colors is None:
        lut = palette(n)
    else:
        lut = np.asarray(colors, dtype=np.int64)
        if lut.shape != (n, 3):
            raise ValueError(f"colors must be {n}×3 (one RGB colour per mask), got {lut.shape}")
        lut = np.clip(lut, 0, 255).astype(np.uint8)

    # Label map: 0 = background, k+1 = mask k. Paint largest first so small masks win.
    areas = stack.reshape(n, -1).sum(axis=1)
    order = np.argsort(-areas, kind="stable")
    label = np.zeros((h, w), np.int32)
    for k in order:
        if areas[k]:
            label[stack[k]] = k + 1

    lut0 = np.concatenate([np.zeros((1, 3), np.uint8), lut])  # row 0 unused (background)
    inside = label > 0
    out = img.copy()
    tint = lut0[label[inside]].astype(np.float32)
    base = img[inside].astype(np.float32)
    out[inside] = np.clip(np.rint(base * (1.0 - alpha) + tint * alpha), 0, 255).astype(np.uint8)

    if outlines:
        width = outline_width if outline_width is not None else 1 + min(h, w) // 500
        if width > 0:
            # A pixel is on an edge if any pixel within `width` has a different label;
            # only pixels inside a mask are coloured, so outlines sit on the mask side.
            size = 2 * width + 1
            lo = ndimage.minimum_filter(label, size=size, mode="nearest")
            hi = ndimage.maximum_filter(label, size=size, mode="nearest")
            edge = (lo != hi) & inside
            out[edge] = lut0[label[edge]]
    return out


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of a five-pointed star centred at (cx, cy) with outer radius r."""
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.45
        a = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def draw_prompts(
    image: np.ndarray,
    points: np.ndarray | Sequence[Sequence[float]] | None = None,
    labels: np.ndarray | Sequence[int] | None = None,
    boxes: np.ndarray | Sequence[float] | Sequence[Sequence[float]] | None = None,
    marker_size: int | None = None,
) -> np.ndarray:
    """Draw SAM prompts on an image.

    Args:
        image: ``uint8`` H×W×3 RGB.
        points: N×2 ``(x, y)`` in pixels.
        labels: N ints: 1 = foreground (green star), 0 = background (red circle);
            negative labels (SAM's padding points) are skipped. Default: all foreground.
        boxes: one box ``[x0, y0, x1, y1]`` or M×4 boxes, drawn as green rectangles.
        marker_size: marker radius in pixels; default scales with the image.
    Returns:
        new ``uint8`` H×W×3 array.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 H×W×3, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    pil = Image.fromarray(np.ascontiguousarray(img))
    draw = ImageDraw.Draw(pil)
    short = min(h, w)
    line = max(2, round(short / 300))
    r = marker_size if marker_size is not None else max(6, round(short / 50))

    if boxes is not None:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        for x0, y0, x1, y1 in b:
            draw.rectangle([x0, y0, x1, y1], outline=BOX_COLOR, width=line)

    if points is not None:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        labs = (
            np.ones(len(pts), np.int64)
            if labels is None
            else np.asarray(labels, dtype=np.int64).reshape(-1)
        )
        if len(labs) != len(pts):
            raise ValueError(f"{len(pts)} points but {len(labs)} labels")
        edge = max(1, line // 2)
        for (x, y), lab in zip(pts, labs):
            if lab < 0:
                continue
            if lab >= 1:
                draw.polygon(_star(x, y, r * 1.3), fill=POSITIVE_COLOR, outline=MARKER_EDGE, width=edge)
            else:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=NEGATIVE_COLOR, outline=MARKER_EDGE, width=edge)
    return np.asarray(pil).copy()
