"""Synthetic scene generator: a data engine for training and testing segmenters.

Every image is a random scene — a textured background (sometimes split into "stuff"
regions) with objects of many kinds painted over each other — and its ground truth is
exact: each instance's mask is the part of the object that is *visible* in the final
image. Instances hidden (almost) entirely by later objects are dropped.

Diversity matters more than realism:

* **backgrounds and object textures** — flat colour, linear/radial gradients, stripes,
  checkers, polka dots, smooth value noise, grain; the ``alt`` style adds plaid,
  concentric rings, waves and cells;
* **shapes** — ellipses, rectangles, random polygons, regular polygons, stars, smooth
  blobs, rings and shapes with holes, thin bars, thick curves, dumbbells (thin parts),
  font glyphs and stroke glyphs (text-like); ``alt`` adds crescents, crosses, hearts,
  spirals, L/T shapes and arrows;
* **scale** from a few pixels to half the image (log-uniform in ``default``; uniform and
  larger in ``alt``), objects cut by the image border, heavy occlusion;
* **artefacts** — blur, sensor noise, illumination gradients and JPEG compression at
  random quality.

Determinism: image ``i`` of a run with seed ``s`` draws everything from a generator seeded
by ``(s, i, style)``, so files are byte-identical whatever the number of worker
processes and whichever subset of indices is generated.

Output is the SA-1B layout read by :class:`pocketsam.data.sa1b.SA1BReader`.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pycocotools import mask as mask_utils

from pocketsam.errors import InputError
from pocketsam.io import write_bytes_atomic

STYLES = ("default", "alt")

#: Instances whose visible part is below this fraction of the drawn shape, or below
#: :data:`MIN_VISIBLE_PIXELS`, are dropped from the ground truth.
MIN_VISIBLE_FRACTION = 0.15
MIN_VISIBLE_PIXELS = 8

_STYLE_CODE = {"default": 0, "alt": 1}


def image_rng(seed: int, index: int, style: str = "default") -> np.random.Generator:
    """The generator image ``index`` of a run with ``seed`` draws from."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index), _STYLE_CODE[style]]))


# ---------------------------------------------------------------------------- colours


def _colour(rng: np.random.Generator, style: str) -> np.ndarray:
    """A random RGB colour (float32, 0..255)."""
    if style == "default":
        r = rng.random()
        if r < 0.15:  # near grey
            return np.full(3, rng.uniform(0, 255), np.float32) + rng.normal(0, 6, 3).astype(np.float32)
        return rng.uniform(0, 255, 3).astype(np.float32)
    # alt: HSV with pastel/earthy bias
    h = rng.random()
    s = rng.choice([rng.uniform(0.1, 0.4), rng.uniform(0.5, 1.0)])
    v = rng.uniform(0.25, 1.0)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (np.array(rgb, np.float32) * 255).astype(np.float32)


def _contrasting(rng: np.random.Generator, style: str, other: np.ndarray) -> np.ndarray:
    """A colour that differs from ``other`` by a visible amount (few tries)."""
    c = _colour(rng, style)
    for _ in range(3):
        if np.abs(c - other).sum() > 60:
            break
        c = _colour(rng, style)
    return c


# ---------------------------------------------------------------------------- textures


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as broadcastable (h,1) and (1,w) float32 arrays."""
    return (np.arange(h, dtype=np.float32) + 0.5)[:, None], (np.arange(w, dtype=np.float32) + 0.5)[None, :]


def _lerp(t: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Blend two colours with a weight map ``t`` (h×w, 0..1) → h×w×3 float32."""
    t = t.astype(np.float32, copy=False)[..., None]
    return c1 + t * (c2 - c1)


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth noise in 0..1 with about ``cells`` features across the larger side."""
    gh = max(2, int(round(h / max(h, w) * cells)) + 2)
    gw = max(2, int(round(w / max(h, w) * cells)) + 2)
    small = (rng.random((gh, gw)) * 255).astype(np.uint8)
    big = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    return np.asarray(big, np.float32) / 255.0


def _direction(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    a = rng.uniform(0, math.pi)
    return xx * math.cos(a) + yy * math.sin(a)


def _tex_flat(rng, h, w, c1, c2, style):
    return np.broadcast_to(c1, (h, w, 3)).astype(np.float32)


def _tex_linear(rng, h, w, c1, c2, style):
    yy, xx = _grid(h, w)
    u = _direction(rng, yy, xx)
    t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    return _lerp(t, c1, c2)


def _tex_radial(rng, h, w, c1, c2, style):
    yy, xx = _grid(h, w)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    return _lerp(np.clip(r / max(r.max(), 1e-6), 0, 1), c1, c2)


def _tex_stripes(rng, h, w, c1, c2, style):
    yy, xx = _grid(h, w)
    period = rng.uniform(3, max(4.0, max(h, w) / 3))
    u = _direction(rng, yy, xx) * (2 * math.pi / period)
    s = np.sin(u)
    t = (s > rng.uniform(-0.6, 0.6)) if rng.random() < 0.6 else (s + 1) / 2
    return _lerp(t, c1, c2)


def _tex_checker(rng, h, w, c1, c2, style):
    yy, xx = _grid(h, w)
    period = rng.uniform(3, max(4.0, max(h, w) / 4))
    a = rng.uniform(0, math.pi / 2) if rng.random() < 0.5 else 0.0
    u = (xx * math.cos(a) + yy * math.sin(a)) / period
    v = (-xx * math.sin(a) + yy * math.cos(a)) / period
    t = (np.floor(u).astype(np.int32) + np.floor(v).astype(np.int32)) & 1
    return _lerp(t, c1, c2)


def _tex_dots(rng, h, w, c1, c2, style):
    yy, xx = _grid(h, w)
    period = rng.uniform(4, max(5.0, max(h, w) / 4))
    fy = (yy / period) % 1.0 - 0.5
    fx = (xx / period) % 1.0 - 0.5
    t = (fy * fy + fx * fx) < rng.uniform(0.03, 0.2)
    return _lerp(t, c1, c2)


def _tex_noise(rng, h, w, c1, c2, style):
    t = _value_noise(rng, h, w, rng.uniform(2, 24))
    if rng.random() < 0.3:  # per-channel colour noise
        c3 = _colour(rng, style)
        t2 = _value_noise(rng, h, w, rng.uniform(2, 24))
        return _lerp(t, c1, c2) * 0.6 + _lerp(t2, c1, c3) * 0.4
    return _lerp(t, c1, c2)


def _tex_grain(rng, h, w, c1, c2, style):
    sigma = rng.uniform(5, 40)
    g = rng.standard_normal((h, w, 1), dtype=np.float32) * sigma
    return c1 + g


def _tex_plaid(rng, h, w, c1, c2, style):
    yy, xx = _grid(h, w)
    p1, p2 = rng.uniform(4, max(5.0, max(h, w) / 3), 2)
    t = 0.5 * ((np.sin(xx * 2 * math.pi / p1) > 0.3) + (np.sin(yy * 2 * math.pi / p2) > 0.3).astype(np.float32))
    return _lerp(t, c1, c2)


def _tex_rings(rng, h, w, c1, c2, style):
    yy, xx = _grid(h, w)
    cy, cx = rng.uniform(-h / 2, 1.5 * h), rng.uniform(-w / 2, 1.5 * w)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    period = rng.uniform(3, max(4.0, max(h, w) / 4))
    return _lerp((np.sin(r * 2 * math.pi / period) + 1) / 2, c1, c2)


def _tex_waves(rng, h, w, c1, c2, style):
    yy, xx = _grid(h, w)
    f1, f2 = rng.uniform(0.02, 0.3, 2)
    amp = rng.uniform(1, 4)
    t = (np.sin(xx * f1 + amp * np.sin(yy * f2)) + 1) / 2
    return _lerp(t, c1, c2)


def _tex_cells(rng, h, w, c1, c2, style):
    yy, xx = _grid(h, w)
    n = int(rng.integers(3, 9))
    py, px = rng.uniform(0, h, n), rng.uniform(0, w, n)
    d = np.full((h, w), np.inf, np.float32)
    idx = np.zeros((h, w), np.int32)
    for k in range(n):
        dk = (yy - py[k]) ** 2 + (xx - px[k]) ** 2
        closer = dk < d
        d = np.where(closer, dk, d)
        idx = np.where(closer, k, idx)
    shades = rng.random(n).astype(np.float32)
    return _lerp(shades[idx], c1, c2)


TEXTURES: dict[str, list[tuple[Callable, float]]] = {
    "default": [
        (_tex_flat, 3.0), (_tex_linear, 1.5), (_tex_radial, 0.8), (_tex_stripes, 1.0),
        (_tex_checker, 0.8), (_tex_dots, 0.5), (_tex_noise, 1.5), (_tex_grain, 0.8),
    ],
    "alt": [
        (_tex_flat, 1.5), (_tex_plaid, 1.0), (_tex_rings, 1.0), (_tex_waves, 1.0),
        (_tex_cells, 1.0), (_tex_noise, 0.7), (_tex_linear, 0.5),
    ],
}


def _pick(rng: np.random.Generator, table: list[tuple[Callable, float]]) -> Callable:
    w = np.array([p for _, p in table], np.float64)
    return table[int(rng.choice(len(table), p=w / w.sum()))][0]


def texture(rng: np.random.Generator, h: int, w: int, style: str, base: np.ndarray | None = None) -> np.ndarray:
    """A random h×w×3 float32 texture (values roughly 0..255).

    Args:
        base: a colour to contrast with (the background under an object), optional.
    """
    c1 = _colour(rng, style) if base is None else _contrasting(rng, style, base)
    c2 = _contrasting(rng, style, c1)
    tex = _pick(rng, TEXTURES[style])(rng, h, w, c1, c2, style)
    if rng.random() < 0.15:  # grain on top of anything
        tex = tex + rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(3, 15)
    return tex


# ---------------------------------------------------------------------------- shapes


@dataclass
class _Frame:
    """Coordinates of a crop, relative to an object's centre and rotated by its angle."""

    h: int
    w: int
    cy: float  # object centre in crop pixel coordinates
    cx: float
    angle: float
    d: float  # nominal object diameter in pixels

    def uv(self) -> tuple[np.ndarray, np.ndarray]:
        """Rotated coordinates (u along the object's axis) as h×w float32 arrays."""
        yy, xx = _grid(self.h, self.w)
        yy, xx = yy - self.cy, xx - self.cx
        c, s = math.cos(self.angle), math.sin(self.angle)
        return xx * c + yy * s, -xx * s + yy * c

    def to_crop(self, pts: np.ndarray) -> list[tuple[float, float]]:
        """Object-frame points (N×2, x/y with unit = 1 px) → crop (x, y) tuples for PIL."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        x = pts[:, 0] * c - pts[:, 1] * s + self.cx
        y = pts[:, 0] * s + pts[:, 1] * c + self.cy
        return [(float(a), float(b)) for a, b in zip(x, y)]

    def canvas(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        im = Image.new("L", (self.w, self.h), 0)
        return im, ImageDraw.Draw(im)


def _pil_mask(im: Image.Image) -> np.ndarray:
    return np.asarray(im) > 127


def _shape_ellipse(rng, f: _Frame) -> np.ndarray:
    u, v = f.uv()
    a = f.d / 2
    b = a * rng.uniform(0.25, 1.0)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _shape_rect(rng, f: _Frame) -> np.ndarray:
    u, v = f.uv()
    a = f.d / 2
    b = a * rng.uniform(0.2, 1.0)
    if rng.random() < 0.4:  # rounded corners
        r = min(a, b) * rng.uniform(0.2, 0.9)
        qu = np.maximum(np.abs(u) - (a - r), 0)
        qv = np.maximum(np.abs(v) - (b - r), 0)
        return qu * qu + qv * qv <= r * r
    return (np.abs(u) <= a) & (np.abs(v) <= b)


def _polar(f: _Frame) -> tuple[np.ndarray, np.ndarray]:
    u, v = f.uv()
    return np.sqrt(u * u + v * v), np.arctan2(v, u)


def _shape_regular(rng, f: _Frame) -> np.ndarray:
    n = int(rng.integers(3, 9))
    rho, th = _polar(f)
    sector = 2 * math.pi / n
    local = np.mod(th, sector) - sector / 2
    return rho * np.cos(local) <= (f.d / 2) * math.cos(sector / 2)


def _shape_polygon(rng, f: _Frame) -> np.ndarray:
    n = int(rng.integers(3, 12))
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    rad = (f.d / 2) * rng.uniform(0.3, 1.0, n)
    pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    im, dr = f.canvas()
    dr.polygon(f.to_crop(pts), fill=255)
    return _pil_mask(im)


def _shape_star(rng, f: _Frame) -> np.ndarray:
    n = int(rng.integers(4, 11))
    inner = rng.uniform(0.15, 0.6)
    ang = np.arange(2 * n) * math.pi / n
    rad = np.where(np.arange(2 * n) % 2 == 0, 1.0, inner) * (f.d / 2)
    pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
    im, dr = f.canvas()
    dr.polygon(f.to_crop(pts), fill=255)
    return _pil_mask(im)


def _shape_blob(rng, f: _Frame) -> np.ndarray:
    rho, th = _polar(f)
    k = int(rng.integers(2, 7))
    r = np.ones_like(th)
    for j in range(1, k + 1):
        r = r + (rng.uniform(-0.35, 0.35) / j) * np.cos(j * th + rng.uniform(0, 2 * math.pi))
    return rho <= (f.d / 2) * 0.75 * r


def _shape_ring(rng, f: _Frame) -> np.ndarray:
    """Annulus (possibly elliptical and off-centre hole)."""
    u, v = f.uv()
    a = f.d / 2
    b = a * rng.uniform(0.5, 1.0)
    outer = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    s = rng.uniform(0.3, 0.85)
    ou, ov = rng.uniform(-0.1, 0.1, 2) * a
    inner = ((u - ou) / (a * s)) ** 2 + ((v - ov) / (b * s)) ** 2 <= 1.0
    return outer & ~inner


def _shape_holes(rng, f: _Frame) -> np.ndarray:
    """A solid shape with 1-5 round or square holes."""
    base = (_shape_blob if rng.random() < 0.5 else _shape_rect)(rng, f)
    u, v = f.uv()
    for _ in range(int(rng.integers(1, 6))):
        r = f.d * rng.uniform(0.04, 0.15)
        hu, hv = rng.uniform(-0.3, 0.3, 2) * f.d
        if rng.random() < 0.5:
            base &= (u - hu) ** 2 + (v - hv) ** 2 > r * r
        else:
            base &= (np.abs(u - hu) > r) | (np.abs(v - hv) > r)
    return base


def _shape_bar(rng, f: _Frame) -> np.ndarray:
    """A thin straight bar (1-6 px wide)."""
    u, v = f.uv()
    half_w = rng.uniform(0.5, 3.0)
    return (np.abs(u) <= f.d / 2) & (np.abs(v) <= half_w)


def _shape_curve(rng, f: _Frame) -> np.ndarray:
    """A thick random polyline / wire."""
    n = int(rng.integers(3, 7))
    pts = rng.uniform(-0.5, 0.5, (n, 2)) * f.d
    im, dr = f.canvas()
    dr.line(f.to_crop(pts), fill=255, width=int(rng.integers(1, max(2, int(f.d / 10)) + 1)), joint="curve")
    return _pil_mask(im)


def _shape_dumbbell(rng, f: _Frame) -> np.ndarray:
    """Two disks joined by a thin neck."""
    u, v = f.uv()
    r = f.d * rng.uniform(0.12, 0.25)
    c = f.d / 2 - r
    neck = rng.uniform(0.5, max(0.6, r * 0.25))
    return ((u - c) ** 2 + v * v <= r * r) | ((u + c) ** 2 + v * v <= r * r) | ((np.abs(u) <= c) & (np.abs(v) <= neck))


_GLYPHS = "ABCDEFGHJKLMNPQRSTUVWXYZabdefghkmnpqrty2345678@#&%$?"


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _shape_glyph(rng, f: _Frame) -> np.ndarray:
    """A font glyph (Pillow's bundled font), rotated."""
    ch = _GLYPHS[int(rng.integers(len(_GLYPHS)))]
    size = int(max(6, min(256, round(f.d * 1.1))) // 2 * 2)
    font = _font(size)
    side = int(f.d * 1.5) + 4
    im = Image.new("L", (side, side), 0)
    ImageDraw.Draw(im).text((side / 2, side / 2), ch, fill=255, font=font, anchor="mm")
    im = im.rotate(math.degrees(f.angle), resample=Image.NEAREST)
    out = Image.new("L", (f.w, f.h), 0)
    out.paste(im, (int(round(f.cx - side / 2)), int(round(f.cy - side / 2))))
    return _pil_mask(out)


def _shape_strokes(rng, f: _Frame) -> np.ndarray:
    """A text-like glyph of 2-4 strokes between anchors of a 3×3 grid."""
    anchors = np.array([(x, y) for y in (-0.5, 0, 0.5) for x in (-0.4, 0, 0.4)]) * f.d
    im, dr = f.canvas()
    width = max(1, int(f.d * rng.uniform(0.05, 0.15)))
    first = int(rng.integers(9))
    for _ in range(int(rng.integers(2, 5))):
        k = int(rng.integers(2, 4))
        idx = [first] + list(rng.integers(0, 9, k - 1))
        dr.line(f.to_crop(anchors[idx]), fill=255, width=width, joint="curve")
        first = int(idx[-1])
    return _pil_mask(im)


def _shape_crescent(rng, f: _Frame) -> np.ndarray:
    u, v = f.uv()
    r = f.d / 2
    off = r * rng.uniform(0.2, 0.7)
    return (u * u + v * v <= r * r) & ((u - off) ** 2 + v * v > (r * rng.uniform(0.7, 1.0)) ** 2)


def _shape_cross(rng, f: _Frame) -> np.ndarray:
    u, v = f.uv()
    a = f.d / 2
    t = a * rng.uniform(0.1, 0.4)
    return ((np.abs(u) <= a) & (np.abs(v) <= t)) | ((np.abs(v) <= a) & (np.abs(u) <= t))


def _shape_heart(rng, f: _Frame) -> np.ndarray:
    u, v = f.uv()
    x, y = u / (f.d / 2.4), -v / (f.d / 2.4)
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


def _shape_spiral(rng, f: _Frame) -> np.ndarray:
    turns = rng.uniform(1.2, 3.0)
    t = np.linspace(0, 1, 80)
    th = t * turns * 2 * math.pi
    r = t * f.d / 2
    pts = np.stack([r * np.cos(th), r * np.sin(th)], 1)
    im, dr = f.canvas()
    dr.line(f.to_crop(pts), fill=255, width=max(1, int(f.d * rng.uniform(0.02, 0.07))), joint="curve")
    return _pil_mask(im)


def _shape_ell(rng, f: _Frame) -> np.ndarray:
    """L- or T-shaped piece."""
    u, v = f.uv()
    a = f.d / 2
    t = a * rng.uniform(0.15, 0.45)
    stem = (np.abs(u) <= t) & (np.abs(v) <= a)
    arm = (np.abs(v - (a - t)) <= t) & (np.abs(u) <= a)
    if rng.random() < 0.5:
        arm &= u >= -t  # L instead of T
    return stem | arm


def _shape_arrow(rng, f: _Frame) -> np.ndarray:
    a = f.d / 2
    t = a * rng.uniform(0.1, 0.25)
    hw, hl = a * rng.uniform(0.35, 0.6), a * rng.uniform(0.3, 0.6)
    pts = np.array([(-a, -t), (a - hl, -t), (a - hl, -hw), (a, 0), (a - hl, hw), (a - hl, t), (-a, t)])
    im, dr = f.canvas()
    dr.polygon(f.to_crop(pts), fill=255)
    return _pil_mask(im)


SHAPES: dict[str, list[tuple[Callable, float]]] = {
    "default": [
        (_shape_ellipse, 1.5), (_shape_rect, 1.2), (_shape_regular, 0.8), (_shape_polygon, 1.5),
        (_shape_star, 0.7), (_shape_blob, 1.5), (_shape_ring, 0.7), (_shape_holes, 0.7),
        (_shape_bar, 0.6), (_shape_curve, 0.6), (_shape_dumbbell, 0.4), (_shape_glyph, 0.8),
        (_shape_strokes, 0.5),
    ],
    "alt": [
        (_shape_crescent, 1.0), (_shape_cross, 1.0), (_shape_heart, 1.0), (_shape_spiral, 0.6),
        (_shape_ell, 1.0), (_shape_arrow, 1.0), (_shape_regular, 0.5), (_shape_ring, 0.4),
    ],
}


# ---------------------------------------------------------------------------- scenes


@dataclass
class Scene:
    """A rendered scene: the image and the visible-part mask of each kept instance.

    Attributes:
        image: ``uint8`` H×W×3 RGB (before JPEG compression).
        label: H×W int32 map of which instance each pixel shows (0: none/dropped).
        ids: the label values of the kept instances, in drawing order.
        quality: the JPEG quality the image is saved at.
    """

    image: np.ndarray
    label: np.ndarray
    ids: np.ndarray
    quality: int

    @property
    def masks(self) -> np.ndarray:
        """K×H×W bool visible-part masks of the kept instances (pairwise disjoint)."""
        return self.label[None] == self.ids[:, None, None]

    def masks_fortran(self) -> np.ndarray:
        """The masks as an H×W×K Fortran-ordered uint8 array, as pycocotools wants."""
        t = np.ascontiguousarray(self.label.T)
        return (t[None] == self.ids[:, None, None]).view(np.uint8).transpose(2, 1, 0)


def _object_sizes(rng: np.random.Generator, n: int, h: int, w: int, style: str) -> np.ndarray:
    """Object diameters in pixels: tiny (≈4 px) to half the image."""
    hi = 0.5 * max(h, w)
    lo = min(4.0, hi)
    if style == "default":
        return np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return rng.uniform(max(lo, 0.05 * hi), hi, n)  # alt: more large objects


def render_scene(rng: np.random.Generator, height: int, width: int, style: str = "default") -> Scene:
    """Draw one random scene. Pure function of the generator state."""
    if style not in STYLES:
        raise InputError(f"unknown synth style '{style}'", f"use one of {', '.join(STYLES)}")
    h, w = height, width
    canvas = texture(rng, h, w, style)
    label = np.zeros((h, w), np.int32)  # 0 = background, k = instance k
    drawn_area: list[int] = [0]

    # "stuff": background split by a wavy horizon into regions that are instances too
    if rng.random() < 0.4:
        yy, xx = _grid(h, w)
        y0 = rng.uniform(0.3, 0.8) * h
        amp, freq, ph = rng.uniform(0, 0.08) * h, rng.uniform(0.5, 4) * 2 * math.pi / w, rng.uniform(0, 2 * math.pi)
        region = np.broadcast_to(yy > y0 + amp * np.sin(xx * freq + ph), (h, w))
        canvas = np.where(region[..., None], texture(rng, h, w, style), canvas)
        drawn_area.append(int(region.sum()))
        label[region] = len(drawn_area) - 1

    n = int(rng.integers(3, 31) if style == "default" else rng.integers(2, 13))
    sizes = _object_sizes(rng, n, h, w, style)
    if rng.random() < 0.7:  # big things mostly behind small ones
        sizes = np.sort(sizes)[::-1]
    shapes = SHAPES[style]
    for d in sizes:
        d = float(d)
        shape = _pick(rng, shapes)
        cy = rng.uniform(-0.2 * d, h + 0.2 * d)
        cx = rng.uniform(-0.2 * d, w + 0.2 * d)
        reach = d * 0.75 + 3  # crop half-size: covers rotated shapes and glyph overhang
        y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
        x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
        angle = rng.uniform(0, 2 * math.pi)
        if y1 - y0 < 1 or x1 - x0 < 1:
            continue
        frame = _Frame(y1 - y0, x1 - x0, cy - y0, cx - x0, angle, d)
        m = shape(rng, frame)
        area = int(m.sum())
        if area == 0:
            continue
        under = canvas[y0:y1, x0:x1]
        tex = texture(rng, y1 - y0, x1 - x0, style, base=under[m].mean(0))
        if rng.random() < 0.3:  # shading across the object
            yy, xx = _grid(y1 - y0, x1 - x0)
            tex = tex * (0.7 + 0.6 * ((xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / max(d, 1) % 1.0))[..., None]
        under[m] = tex[m]
        drawn_area.append(area)
        label[y0:y1, x0:x1][m] = len(drawn_area) - 1

    # visible parts; drop (near-)fully occluded instances
    k = len(drawn_area) - 1
    visible = np.bincount(label.ravel(), minlength=k + 1)
    keep = [i for i in range(1, k + 1) if visible[i] >= MIN_VISIBLE_PIXELS and visible[i] >= MIN_VISIBLE_FRACTION * drawn_area[i]]
    ids = np.array(keep, np.int32)
    if len(ids) < k:  # forget dropped instances
        lut = np.zeros(k + 1, np.int32)
        lut[ids] = ids
        label = lut[label]

    # photometric artefacts
    if rng.random() < 0.3:  # illumination gradient / vignette
        yy, xx = _grid(h, w)
        g = 1 + rng.uniform(-0.35, 0.35) * ((xx / w - 0.5) * rng.uniform(-1, 1) + (yy / h - 0.5) * rng.uniform(-1, 1)) * 2
        canvas = canvas * g[..., None]
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    blur_p = 0.3 if style == "default" else 0.5
    if rng.random() < blur_p:
        radius = rng.uniform(0.4, 1.6 if style == "default" else 2.5)
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    if rng.random() < 0.4:
        sigma = rng.uniform(1, 12)
        noise = rng.standard_normal((h, w, 3), dtype=np.float32) * sigma
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
    quality = int(rng.integers(40, 96) if style == "default" else rng.integers(20, 80))
    return Scene(image=np.ascontiguousarray(image), label=label, ids=ids, quality=quality)


# ---------------------------------------------------------------------------- files


def image_name(index: int) -> str:
    """File stem of image ``index`` (``sa_000001`` for index 0, SA-1B-like)."""
    return f"sa_{index + 1:06d}"


def scene_files(scene: Scene, index: int, rng: np.random.Generator) -> tuple[bytes, bytes]:
    """Encode a scene as (JPEG bytes, SA-1B JSON bytes)."""
    h, w = scene.image.shape[:2]
    buf = io.BytesIO()
    Image.fromarray(scene.image).save(buf, format="JPEG", quality=scene.quality)
    name = image_name(index)
    anns = []
    if len(scene.ids):
        rles = mask_utils.encode(scene.masks_fortran())
        areas = mask_utils.area(rles)
        boxes = mask_utils.toBbox(rles).astype(np.int64)
        for k, (rle, area, box) in enumerate(zip(rles, areas, boxes)):
            x, y, bw, bh = (int(v) for v in box)
            flat = np.flatnonzero(scene.label[y : y + bh, x : x + bw] == scene.ids[k])
            p = int(flat[int(rng.integers(len(flat)))])
            anns.append(
                {
                    "id": (index + 1) * 1000 + k,
                    "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                    "bbox": [int(v) for v in box],
                    "area": int(area),
                    "point_coords": [[x + p % bw + 0.5, y + p // bw + 0.5]],
                    "crop_box": [0, 0, w, h],
                }
            )
    meta = {"image": {"image_id": index + 1, "width": w, "height": h, "file_name": f"{name}.jpg"}, "annotations": anns}
    return buf.getvalue(), json.dumps(meta, separators=(",", ":")).encode("utf-8")


def generate_image(seed: int, index: int, height: int = 512, width: int = 512, style: str = "default") -> tuple[bytes, bytes]:
    """JPEG and JSON bytes of image ``index`` of a run — a pure function of its arguments."""
    rng = image_rng(seed, index, style)
    scene = render_scene(rng, height, width, style)
    return scene_files(scene, index, rng)


def _write_atomic(path: Path, data: bytes) -> None:
    # No fsync: generated data can always be regenerated, and an fsync per file would
    # dominate the run time. The rename still means an interrupted run leaves no torn file.
    write_bytes_atomic(data, path, fsync=False)


def _work(args: tuple[str, int, int, int, int, str]) -> int:
    out, seed, index, h, w, style = args
    jpg, meta = generate_image(seed, index, h, w, style)
    name = image_name(index)
    _write_atomic(Path(out) / f"{name}.jpg", jpg)
    _write_atomic(Path(out) / f"{name}.json", meta)  # JSON last: its presence marks a complete pair
    return index


def generate_dataset(
    out: str | Path,
    num_images: int,
    size: tuple[int, int] = (512, 512),
    seed: int = 0,
    style: str = "default",
    workers: int | None = None,
    start: int = 0,
    progress: bool = True,
) -> int:
    """Write ``num_images`` scenes (indices ``start..start+num_images-1``) to ``out``.

    Args:
        out: output directory (created if missing).
        size: ``(H, W)``.
        workers: processes (default: all CPUs); ``1`` runs in this process.
        progress: show a tqdm bar on stderr.
    Returns:
        the number of images written.
    Raises:
        InputError: bad arguments or an unwritable directory.
    """
    if style not in STYLES:
        raise InputError(f"unknown synth style '{style}'", f"use one of {', '.join(STYLES)}")
    if num_images < 0:
        raise InputError(f"--num-images must be >= 0, got {num_images}")
    h, w = size
    if h < 8 or w < 8 or h * w > 64_000_000:
        raise InputError(f"image size {h}x{w} is out of range", "use sizes between 8 and ~8000 pixels per side")
    outdir = Path(out)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory '{outdir}': {exc.strerror or exc}", "check the path") from None
    from tqdm import tqdm

    jobs = [(str(outdir), int(seed), i, h, w, style) for i in range(start, start + num_images)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    bar = tqdm(total=len(jobs), unit="img", desc="synth", disable=not progress)
    try:
        if workers == 1:
            for job in jobs:
                _work(job)
                bar.update()
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                for _ in pool.imap_unordered(_work, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8)))):
                    bar.update()
    except OSError as exc:
        raise InputError(f"cannot write to '{outdir}': {exc.strerror or exc}", "check free space and permissions") from None
    finally:
        bar.close()
    return len(jobs)
