"""What "segment everything" tells its user while and after it runs (issue 22): progress
inside one image (the generators' ``progress`` callback, the CLI's bar and ``--quiet``),
and no silent zero (a warning when no mask came out while the checkpoint's own thresholds
were not used). On the bundled model and the synthetic scene in the repository, with
small grids so that each run takes a second or two."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import SCENE
from pocketsam.cli import main


@pytest.fixture(scope="module")
def sam():
    from pocketsam import build_sam

    return build_sam()  # the bundled model: it records thresholds of its own


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    from pocketsam.io import load_image

    return load_image(SCENE)


def _unused(caught: list) -> list:
    from pocketsam.everything._common import UnusedRecommendationWarning

    return [w for w in caught if issubclass(w.category, UnusedRecommendationWarning)]


def test_no_silent_zero(sam, scene) -> None:
    """SAM's default thresholds reject every mask of the bundled model: the generator says
    so once, naming the thresholds and how to use the checkpoint's; with them it finds masks."""
    from pocketsam import SamAutomaticMaskGenerator

    assert set(sam.everything_defaults) >= {"pred_iou_thresh", "stability_score_thresh"}
    gen = SamAutomaticMaskGenerator(sam, points_per_side=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert gen.generate(scene) == []
        assert gen.generate(scene) == []  # said once per generator
    said = _unused(caught)
    assert len(said) == 1
    text = str(said[0].message)
    assert "returned no masks" in text and f"rejected all {gen.last_stats['masks']['decoded']} candidates" in text
    assert "pred_iou_thresh=0.88" in text and f"pred_iou_thresh={sam.everything_defaults['pred_iou_thresh']:g}" in text
    call = ", ".join(f"{k}={sam.everything_defaults[k]:g}" for k in ("pred_iou_thresh", "stability_score_thresh"))
    assert f"SamAutomaticMaskGenerator(sam, {call})" in text and "make_generator('grid', sam)" in text
    assert said[0].filename == __file__  # points at the caller's line

    # the two ways the warning names find masks
    from pocketsam.everything import make_generator

    kwargs = {k: sam.everything_defaults[k] for k in ("pred_iou_thresh", "stability_score_thresh")}
    for gen in (SamAutomaticMaskGenerator(sam, points_per_side=4, **kwargs), make_generator("grid", sam, points_per_side=4)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert len(gen.generate(scene)) > 0 and _unused(caught) == []


def test_zero_without_a_recommendation_is_not_blamed_on_thresholds(sam, scene) -> None:
    """A model that records no thresholds, or thresholds that were used, gets no warning."""
    import copy

    from pocketsam import SamAutomaticMaskGenerator

    bare = copy.deepcopy(sam)
    bare.everything_defaults = {}
    strict = {k: 0.999 for k in ("pred_iou_thresh", "stability_score_thresh")}
    cases = [(bare, {}), (sam, {"pred_iou_thresh": 0.999,
                                "stability_score_thresh": sam.everything_defaults["stability_score_thresh"]})]
    sam_strict = copy.deepcopy(sam)
    sam_strict.everything_defaults = dict(strict)
    cases.append((sam_strict, strict))  # zero masks with exactly the recorded thresholds
    for model, kwargs in cases:
        gen = SamAutomaticMaskGenerator(model, points_per_side=4, **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = gen.generate(scene)
        if model is sam:  # pred_iou_thresh differs from the recommendation, and nothing came out
            assert records == [] and len(_unused(caught)) == 1
            assert "its thresholds (pred_iou_thresh=0.999) rejected" in str(_unused(caught)[0].message)  # only the unused one
        else:
            assert records == [] and _unused(caught) == []


@pytest.mark.parametrize("mode", ["grid", "hierarchical", "boxes"])
def test_progress_callback(sam, scene, mode: str) -> None:
    """``generator.progress(done, total)`` after every decoded batch: done grows by the batch,
    total is every prompt announced so far, and both end at the prompts decoded."""
    from pocketsam.everything import make_generator

    batch = {"boxes": {"boxes_per_batch": 7}}.get(mode, {"points_per_side": 8, "points_per_batch": 10})
    gen = make_generator(mode, sam, **batch)
    calls: list[tuple[int, int]] = []
    gen.progress = lambda done, total: calls.append((done, total))
    gen.generate(scene)
    n = gen.last_stats["prompts_total"]
    assert n > 7 and calls, gen.last_stats
    assert calls[-1] == (n, n)
    dones = [d for d, _ in calls]
    assert dones == sorted(set(dones)) and all(d <= t for d, t in calls)
    assert [t for _, t in calls] == sorted(t for _, t in calls)
    steps = np.diff([0, *dones])
    size = batch.get("boxes_per_batch", batch.get("points_per_batch"))
    assert steps.max() <= size and len(calls) >= n // size
    if mode == "hierarchical":  # the dense pass adds its prompts once the sparse pass is done
        assert calls[0][1] == gen.last_stats["prompts"]["sparse"] < n


def _everything(tmp_path: Path, *extra: str) -> list[str]:
    return ["everything", str(SCENE), "--points-per-side", "8", "--points-per-batch", "16",
            "--out", str(tmp_path / "out"), "--force", *extra]


def test_cli_progress_and_quiet(capsys, monkeypatch, tmp_path: Path) -> None:
    """The CLI shows prompts decoded / total on stderr for one image (after
    PROGRESS_DELAY_S, 0 here), none with --quiet; and the bundled model's note, once."""
    import pocketsam.cli.common as common

    monkeypatch.setattr(common, "PROGRESS_DELAY_S", 0.0)
    assert main(_everything(tmp_path)) == 0
    err = capsys.readouterr().err
    frames = err.replace("\r", "\n")
    assert "64/64" in frames and "prompt" in frames
    assert [line for line in err.splitlines() if "synthetic scenes" in line][0].startswith("note: ")
    assert err.count("pocketsam download mobile_sam") == 1

    assert main(_everything(tmp_path, "--quiet")) == 0
    err = capsys.readouterr().err
    assert "64/64" not in err and "prompt/s" not in err
    assert err.count("pocketsam download mobile_sam") == 1


def test_cli_says_when_given_thresholds_reject_everything(capsys, tmp_path: Path) -> None:
    assert main(_everything(tmp_path, "--quiet", "--pred-iou-thresh", "0.999")) == 0
    captured = capsys.readouterr()
    assert "0 masks for scene.jpg" in captured.out
    lines = [line for line in captured.err.splitlines() if "returned no masks" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "leave --pred-iou-thresh out" in lines[0]


def test_progress_bar_shows_completion_even_when_prompts_finish_fast(capsys, monkeypatch) -> None:
    """tqdm skips redraws within its interval; the last one ("64/64") is drawn anyway, so a
    user (and test_cli_progress_and_quiet on a fast machine) sees the decoding finish."""
    import pocketsam.cli.common as common

    monkeypatch.setattr(common, "PROGRESS_DELAY_S", 0.0)

    class Generator:
        progress = None

    gen = Generator()
    with common.prompt_progress(gen, "everything"):
        for done in range(0, 65, 16):  # all within microseconds, far inside tqdm's 0.1 s interval
            gen.progress(done, 64)
    assert "64/64" in capsys.readouterr().err.replace("\r", "\n")
