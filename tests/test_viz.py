"""pocketsam.viz: mask overlays and prompt drawing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pocketsam.masks import encode_rle
from pocketsam.viz import draw_prompts, overlay_masks, palette


def _disk(h: int, w: int, cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def test_palette_distinct() -> None:
    p = palette(20)
    assert p.shape == (20, 3) and p.dtype == np.uint8
    d = np.abs(p[:, None].astype(int) - p[None].astype(int)).sum(-1)
    assert d[~np.eye(20, dtype=bool)].min() > 20  # every pair clearly different
    np.testing.assert_array_equal(palette(5), p[:5])  # deterministic, prefix-stable


def test_overlay_tint_outline_and_stacking() -> None:
    img = np.full((60, 80, 3), 100, np.uint8)
    big = np.zeros((60, 80), bool)
    big[10:50, 10:70] = True
    small = np.zeros((60, 80), bool)
    small[25:35, 30:40] = True
    colors = [(255, 0, 0), (0, 0, 255)]
    out = overlay_masks(img, np.stack([small, big]), colors=colors, alpha=0.5, outline_width=1)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 100).all()  # input untouched
    assert tuple(out[0, 0]) == (100, 100, 100)  # background unchanged
    assert tuple(out[20, 20]) == (50, 50, 178)  # inside big only: 50% blue (rounded)
    assert tuple(out[30, 35]) == (178, 50, 50)  # small drawn on top of big despite order
    assert tuple(out[10, 40]) == (0, 0, 255)  # big's outline, opaque
    assert tuple(out[25, 35]) == (255, 0, 0)  # small's outline
    no_outline = overlay_masks(img, [small, big], colors=colors, outlines=False)
    assert tuple(no_outline[10, 40]) == (50, 50, 178)

    # Alternative inputs: one H×W mask; records with RLE or array segmentations; no masks.
    single = overlay_masks(img, big, colors=[(0, 0, 255)], outlines=False)
    np.testing.assert_array_equal(single, overlay_masks(img, big[None], colors=[(0, 0, 255)], outlines=False))
    assert tuple(single[30, 35]) == (50, 50, 178)
    recs = [{"segmentation": encode_rle(small)}, {"segmentation": big}]
    np.testing.assert_array_equal(overlay_masks(img, recs, colors=colors, outline_width=1), out)
    np.testing.assert_array_equal(overlay_masks(img, np.zeros((0, 60, 80), bool)), img)
    np.testing.assert_array_equal(overlay_masks(img, []), img)

    with pytest.raises(ValueError):
        overlay_masks(img, np.zeros((1, 10, 10), bool))
    with pytest.raises(ValueError):
        overlay_masks(img, [big], colors=[(1, 2, 3), (4, 5, 6)])


def test_overlay_hundreds_of_masks_fast() -> None:
    rng = np.random.default_rng(0)
    h, w = 512, 512
    img = np.zeros((h, w, 3), np.uint8)  # black: a tinted pixel never equals a palette colour
    masks = np.stack(
        [_disk(h, w, *rng.integers(0, 512, 2).tolist(), int(rng.integers(3, 120))) for _ in range(300)]
    )
    t = time.perf_counter()
    out = overlay_masks(img, masks)
    elapsed = time.perf_counter() - t
    assert out.shape == img.shape
    assert elapsed < 2.0, f"300 masks took {elapsed:.2f}s"
    # Reference: a mask is visible unless smaller masks cover it entirely. Each visible
    # mask shows its own palette colour (outlines are opaque), and only inside itself.
    areas = masks.reshape(300, -1).sum(1)
    covered_by_smaller = np.zeros_like(masks)
    running = np.zeros((h, w), bool)
    for k in np.argsort(-areas, kind="stable")[::-1]:  # top of the stack (smallest) first
        covered_by_smaller[k] = running
        running |= masks[k]
    visible = [k for k in range(300) if (masks[k] & ~covered_by_smaller[k]).any()]
    assert len(visible) > 100
    pal = palette(300)
    for k in visible:
        where = (out == pal[k]).all(-1)
        assert where.any() and not (where & ~masks[k]).any(), k


def test_draw_prompts() -> None:
    img = np.zeros((200, 300, 3), np.uint8)
    out = draw_prompts(img, points=[[50, 60], [200, 120]], labels=[1, 0], boxes=[20, 30, 280, 180])
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 0).all()
    g = out[60, 50]
    assert g[1] > 150 and g[0] < 100  # green star at the foreground point
    r = out[120, 200]
    assert r[0] > 150 and r[1] < 100  # red marker at the background point
    assert out[30, 150, 1] > 150 and out[100, 20, 1] > 150  # box edges drawn
    assert out[100, 150].sum() == 0  # box interior untouched
    # padding label -1 skipped; labels default to foreground; several boxes
    out2 = draw_prompts(img, points=[[100, 100]], labels=[-1])
    assert out2.sum() == 0
    out3 = draw_prompts(img, points=np.array([[100.0, 100.0]]), boxes=[[0, 0, 10, 10], [50, 50, 90, 90]])
    assert out3[100, 100, 1] > 150 and out3[50, 70, 1] > 150
    with pytest.raises(ValueError):
        draw_prompts(img, points=[[1, 2]], labels=[1, 0])
