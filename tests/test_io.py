"""pocketsam.io: every image kind → uint8 H×W×3 RGB; clean errors; atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pocketsam.errors import InputError
from pocketsam.io import load_image, save_png_atomic, write_json_atomic, write_text_atomic


def _check_rgb(a: np.ndarray, h: int, w: int) -> None:
    assert a.dtype == np.uint8 and a.shape == (h, w, 3) and a.flags.c_contiguous


def test_rgb_formats_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for ext in ("png", "bmp", "tiff", "webp"):
        path = tmp_path / f"x.{ext}"
        Image.fromarray(rgb).save(path, **({"lossless": True} if ext == "webp" else {}))
        out = load_image(path)
        _check_rgb(out, 20, 30)
        np.testing.assert_array_equal(out, rgb, err_msg=ext)
    smooth = np.zeros((20, 30, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 30, dtype=np.uint8)
    smooth[..., 1] = 120
    Image.fromarray(smooth).save(tmp_path / "x.jpg", quality=95)
    out = load_image(str(tmp_path / "x.jpg"))  # str path works too
    _check_rgb(out, 20, 30)
    assert np.abs(out.astype(int) - smooth).mean() < 4  # lossy, but the same picture


def test_grayscale_and_palette(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (4, 1))  # 4×25
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    _check_rgb(out, 4, 25)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)

    pal = Image.fromarray(np.full((5, 6, 3), (10, 200, 30), np.uint8)).convert("P", palette=Image.ADAPTIVE)
    pal.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    _check_rgb(out, 5, 6)
    assert tuple(out[0, 0]) == (10, 200, 30)

    Image.new("1", (7, 3), 1).save(tmp_path / "b.png")
    assert (load_image(tmp_path / "b.png") == 255).all()


def test_alpha_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red, with junk colour under full transparency
    rgba[:2, :, 3] = 255  # top half opaque
    rgba[2:, :, 3] = 0  # bottom half transparent
    rgba[:, 0, 3] = 128  # first column half transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    _check_rgb(out, 4, 4)
    assert tuple(out[0, 1]) == (200, 0, 0)
    assert tuple(out[3, 1]) == (255, 255, 255)
    r, g, b = (int(v) for v in out[0, 0])
    assert abs(r - 227) <= 1 and abs(g - 127) <= 1 and abs(b - 127) <= 1  # 50% over white

    la = Image.fromarray(np.stack([np.full((3, 3), 0, np.uint8), np.full((3, 3), 0, np.uint8)], -1), mode="LA")
    la.save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png") == 255).all()


def test_16bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    a = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    Image.fromarray(a).save(tmp_path / "g16.tif")
    for name in ("g16.png", "g16.tif"):
        out = load_image(tmp_path / name)
        _check_rgb(out, 1, 4)
        np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
        assert (out[..., 0] == out[..., 2]).all()


def test_32bit_int_and_float(tmp_path: Path) -> None:
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)  # unit range
    Image.fromarray(f).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "f.tif")[0, :, 0], [0, 128, 255])

    f = np.array([[-10.0, 0.0, 10.0]], dtype=np.float32)  # arbitrary range: stretched
    Image.fromarray(f).save(tmp_path / "f2.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "f2.tif")[0, :, 0], [0, 128, 255])

    i = np.array([[0, 1000, 100000]], dtype=np.int32)  # beyond 16 bit: stretched
    Image.fromarray(i).save(tmp_path / "i.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "i.tif")[0, :, 0], [0, 3, 255])


def test_exif_orientation_applied(tmp_path: Path) -> None:
    rgb = np.zeros((10, 40, 3), np.uint8)  # stored 40 wide × 10 high
    rgb[:, :5] = 255  # white strip on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "rot.jpg")
    _check_rgb(out, 40, 10)  # displayed: 10 wide × 40 high
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # left edge went to the top


def test_missing_directory_corrupt_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="is a directory"):
        load_image(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "notes.txt")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "empty.png")

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated") as info:
        load_image(tmp_path / "trunc.png")
    assert "\n" not in str(info.value)

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[:200])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(tmp_path / "trunc.jpg")


def test_decompression_bomb_limit(tmp_path: Path) -> None:
    Image.new("RGB", (100, 50)).save(tmp_path / "big.png")
    with pytest.raises(InputError) as info:
        load_image(tmp_path / "big.png", max_pixels=4999)
    msg = str(info.value)
    assert "100x50 = 5,000 pixels, above the limit of 4,999 pixels" in msg and "--max-pixels 5000" in msg and "max_pixels=5000" in msg
    _check_rgb(load_image(tmp_path / "big.png", max_pixels=5000), 50, 100)
    _check_rgb(load_image(tmp_path / "big.png", max_pixels=None), 50, 100)
    # Lifting the limit beyond Pillow's own must not leave Pillow's global limit changed.
    before = Image.MAX_IMAGE_PIXELS
    load_image(tmp_path / "big.png", max_pixels=10**12)
    assert Image.MAX_IMAGE_PIXELS == before


def test_atomic_writers(tmp_path: Path) -> None:
    mask = np.zeros((6, 8), bool)
    mask[1:3, 2:5] = True
    save_png_atomic(mask, tmp_path / "m.png")
    back = np.asarray(Image.open(tmp_path / "m.png"))
    assert back.dtype == np.uint8 and set(np.unique(back)) == {0, 255}
    np.testing.assert_array_equal(back == 255, mask)

    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    save_png_atomic(rgb, tmp_path / "rgb.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "rgb.png")), rgb)
    save_png_atomic(Image.fromarray(rgb), tmp_path / "rgb.png")  # PIL input, overwrite

    obj = {"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(3), "p": tmp_path}
    write_json_atomic(obj, tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 3, "b": 0.5, "c": [0, 1, 2], "p": str(tmp_path)}

    # Files get normal (umask) permissions, and no temporary files are left behind.
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "rgb.png", "x.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_text_atomic("old\n", target)
    with pytest.raises(ValueError):  # NaN is not JSON: nothing must be written
        write_json_atomic({"v": float("nan")}, target)
    assert target.read_text() == "old\n"
    with pytest.raises(InputError, match="cannot write"):
        write_text_atomic("x", tmp_path / "no_such_dir" / "x.txt")
    (tmp_path / "adir").mkdir()
    with pytest.raises(InputError, match="directory"):
        write_text_atomic("x", tmp_path / "adir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "x.json"]
