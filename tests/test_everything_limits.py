"""Bounded work for "segment everything" and prompts (#24 items 15, 16): documented upper
bounds, checked before anything is allocated, the same in the library and the CLI; crops
of less than one pixel are skipped, not blamed on the image."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from pocketsam.cli import main
from pocketsam.errors import PocketSamError
from pocketsam.everything.limits import (
    MAX_CROP_N_LAYERS,
    MAX_GRID_PROMPTS,
    MAX_POINTS_PER_SIDE,
    check_everything_work,
    everything_work,
)
from pocketsam.prompts import MAX_PROMPT_BATCH, MAX_PROMPT_POINTS, check_prompt_count


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


@pytest.fixture(scope="module")
def nano():
    from pocketsam.models import MODEL_CONFIGS, create_model

    torch.manual_seed(0)
    model = create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)).eval()
    return model


@pytest.fixture(scope="module")
def nano_ckpt(nano, tmp_path_factory):
    from pocketsam.checkpoints import save_checkpoint

    return save_checkpoint(nano, tmp_path_factory.mktemp("nano") / "nano64.safetensors")


def test_work_estimate_is_arithmetic():
    assert everything_work(32) == {"crops": 1, "prompts": 1024}
    assert everything_work(32, 1) == {"crops": 5, "prompts": 5 * 1024}
    assert everything_work(32, 2, downscale=2) == {"crops": 21, "prompts": 1024 + 4 * 256 + 16 * 64}
    assert check_everything_work(MAX_POINTS_PER_SIDE)["prompts"] == MAX_GRID_PROMPTS  # the bound admits itself
    assert check_everything_work(64, MAX_CROP_N_LAYERS, downscale=2)["crops"] == 341


@pytest.mark.parametrize("kwargs, message", [
    ({"points_per_side": 100000}, "10,000,000,000 prompts per crop"),
    ({"points_per_side": 2, "crop_n_layers": 50}, "crop_n_layers 50 means"),
    ({"points_per_side": 64, "crop_n_layers": 4}, "1,396,736 prompts over 341 crops"),
    ({"points_per_side": None, "point_grids": [np.zeros((1, 2))] * 7, "crop_n_layers": 6}, "crop_n_layers 6"),
    ({"points_per_batch": 100000}, "points_per_batch must be from 1 to 4096"),
])
@pytest.mark.parametrize("mode", ["grid", "hierarchical"])
def test_library_refuses_unbounded_grids_before_allocating(nano, mode, kwargs, message):
    from pocketsam.everything import GENERATORS

    t0 = time.perf_counter()
    with pytest.raises(PocketSamError, match=message):
        GENERATORS[mode](nano, **kwargs)
    assert time.perf_counter() - t0 < 2.0  # no 74 GiB grid, no 4**50 crops


def test_prompt_count_bound():
    check_prompt_count(MAX_PROMPT_POINTS, MAX_PROMPT_BATCH)
    with pytest.raises(PocketSamError, match="100,000 points in one prompt; at most 1024"):
        check_prompt_count(100_000)
    with pytest.raises(PocketSamError, match="prompts in one call"):
        check_prompt_count(0, MAX_PROMPT_BATCH + 1)


@pytest.mark.parametrize("extra, message", [
    (["--points-per-side", "100000"], "--points-per-side 100000 means 10,000,000,000 prompts per crop"),
    (["--crop-n-layers", "50"], "--crop-n-layers 50 means"),
    (["--crop-n-layers", "6", "--points-per-side", "2"], "--crop-n-layers 6 means 5,461 crops"),
    (["--points-per-batch", "100000"], "--points-per-batch must be from 1 to 4096, got 100000"),
])
def test_cli_refuses_unbounded_work_with_the_numbers(tmp_path, capsys, nano_ckpt, extra, message):
    img = tmp_path / "one.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(img)
    t0 = time.perf_counter()
    assert main(["everything", str(img), "--checkpoint", str(nano_ckpt), *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert time.perf_counter() - t0 < 5.0 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("mode", ["grid", "hierarchical"])
def test_crops_under_one_pixel_are_skipped_not_blamed_on_the_image(tmp_path, capsys, nano_ckpt, nano, mode):
    """--crop-n-layers 3 on a 1×1 image said 'expected an H×W×3 image, got (0, 1, 3)'."""
    from pocketsam.everything import GENERATORS

    gen = GENERATORS[mode](nano, points_per_side=2, crop_n_layers=3, pred_iou_thresh=-100, stability_score_thresh=0)
    for shape in [(1, 1, 3), (1, 7, 3), (3, 2, 3)]:
        records = gen.generate(np.full(shape, 128, np.uint8))
        assert isinstance(records, list)
        assert gen.last_stats["crops"] + gen.last_stats["crops_skipped"] == 85
        assert gen.last_stats["crops"] <= shape[0] * shape[1] * 4  # only crops holding distinct pixels ran
    img = tmp_path / "one.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(img)
    argv = ["everything", str(img), "--checkpoint", str(nano_ckpt), "--mode", mode, "--crop-n-layers", "3",
            "--points-per-side", "2", "--out", str(tmp_path / "o")]
    assert main(argv) == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "o" / "one" / "annotations.json").read_text())
    assert doc["image"]["height"] == 1 and (tmp_path / "o" / "one" / "overlay.png").is_file()
