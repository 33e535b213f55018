"""pocketsam.everything.results: the output folders, provenance, resume and COCO file of
``pocketsam everything``, as a library (issue 23 item 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pocketsam.errors import InputError, PocketSamError
from pocketsam.everything.results import (
    EverythingRun,
    is_done,
    missing_files,
    provenance,
    provenance_differences,
    write_result,
)


@pytest.fixture(scope="module")
def generator():
    from pocketsam.everything import make_generator
    from pocketsam.models import MODEL_CONFIGS, create_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)).eval()
    yield make_generator("grid", model, points_per_side=2, pred_iou_thresh=-100, stability_score_thresh=0,
                         output_mode="coco_rle")
    torch.set_num_threads(threads)


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return sorted(folder.iterdir())


def test_a_python_run_resumes_and_writes_one_coco_file(tmp_path, generator):
    from pocketsam.io import load_image

    files = _images(tmp_path / "in", 2)
    ckpt = tmp_path / "model.safetensors"
    prov = provenance(ckpt, "ab" * 32, "grid", {"points_per_side": 2})
    assert prov["settings"]["pred_iou_thresh"] == 0.88  # left out: the generator's default, recorded
    run = EverythingRun(tmp_path / "out", files, lambda f: prov)
    plan = run.plan()
    assert [f.name for f, _ in plan.todo] == ["0.png", "1.png"] and plan.done == 0
    for file, dest in plan.todo:
        image = load_image(file)
        doc = run.write(file, image, generator.generate(image), generator.last_stats)
        assert doc["provenance"] == prov and is_done(file, dest)
    assert run.plan().todo == [] and run.plan().done == 2
    path, coco, missing = run.write_coco()
    assert missing == [] and [im["file_name"] for im in coco["images"]] == ["0.png", "1.png"]
    assert json.loads(path.read_text())["annotations"] == coco["annotations"]

    (tmp_path / "out" / "1" / "overlay.png").unlink()  # done means every file
    assert not is_done(files[1], tmp_path / "out" / "1") and missing_files(tmp_path / "out" / "1") == ["overlay.png"]
    plan = run.plan()
    assert plan.incomplete == [("1.png", ["overlay.png"])] and [f.name for f, _ in plan.todo] == ["1.png"]

    other = {**prov, "mode": "hierarchical"}
    assert provenance_differences(prov, other) == ["mode: grid → hierarchical"]
    with pytest.raises(InputError, match="2 finished results .* were made differently"):
        EverythingRun(tmp_path / "out", files, lambda f: other).plan()
    stale = EverythingRun(tmp_path / "out", files, lambda f: other).plan(overwrite=True)
    assert stale.stale == ["0.png", "1.png"]
    coco, missing = EverythingRun(tmp_path / "out", files, lambda f: other).coco()
    assert coco["images"] == [] and missing == ["0.png", "1.png"]  # results made otherwise are not current


def test_write_result_never_leaves_one_file_without_the_other(tmp_path, generator):
    image = np.zeros((20, 30, 3), np.uint8)
    dest = tmp_path / "r"
    write_result(dest, Path("a.png"), image, generator.generate(image), {})
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    bad = [{"segmentation": {"size": [20, 30], "counts": "0"}, "area": 1, "bbox": [0, 0, 1, 1], "predicted_iou": float("nan"),
            "point_coords": [[0.0, 0.0]], "stability_score": 1.0, "crop_box": [0, 0, 30, 20]}]
    with pytest.raises(PocketSamError, match="non-finite numbers .*annotation 1 predicted_iou"):
        write_result(dest, Path("a.png"), image, bad, {})
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before  # the old result, whole
    with pytest.raises(PocketSamError):
        write_result(tmp_path / "new", Path("a.png"), image, bad, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_typed_settings_hold_the_generators_defaults():
    """One typed settings object per mode (issue 23 item 4) replaces reading constructor
    defaults with inspect; this test alone compares the two, so a changed default is
    caught here (change both)."""
    import inspect
    from dataclasses import fields

    from pocketsam.everything import GENERATORS
    from pocketsam.everything.modes import SETTINGS, default_setting, result_settings

    for mode, cls in SETTINGS.items():
        params = {}
        for klass in reversed(GENERATORS[mode].__mro__):
            if "__init__" in klass.__dict__ and klass is not object:
                params.update(inspect.signature(klass.__dict__["__init__"]).parameters)
        for f in fields(cls):
            assert f.name in params, (mode, f.name)
            assert params[f.name].default == f.default == default_setting(mode, f.name), (mode, f.name)
    assert result_settings("grid", {"points_per_side": 4, "points_per_batch": 8}) == SETTINGS["grid"](points_per_side=4)
    with pytest.raises(KeyError):
        default_setting("grid", "points_per_batch")  # changes no result
