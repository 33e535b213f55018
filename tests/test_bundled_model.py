"""The bundled model (pocketsam_tiny trained on synthetic scenes; see README): it loads with
no arguments, is small enough to ship, and still segments the shipped example scene."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pocketsam import build_sam
from pocketsam.checkpoints import default_checkpoint
from pocketsam.cli import main
from pocketsam.models import MODEL_CONFIGS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def bundled():
    return build_sam()


def test_build_sam_without_arguments_is_the_bundled_model(bundled):
    path = default_checkpoint()
    assert path.suffix == ".safetensors" and path.stat().st_size <= 25 * 2**20
    assert bundled.config == MODEL_CONFIGS["pocketsam_tiny"]
    assert not bundled.training
    assert {p.dtype for p in bundled.parameters()} == {torch.float32}  # fp16 on disk


def test_bundled_model_segments_the_example_scene(bundled):
    """A regression guard on the shipped weights: mIoU on the example scene's exact masks
    stays near what was measured when the model was bundled (box 0.466, point 0.376 on
    this scene's 20 masks; an untrained model scores ~0.1)."""
    from pocketsam.data import SA1BReader
    from pocketsam.eval.runners import eval_prompts

    samples = SA1BReader(EXAMPLES)
    box = eval_prompts(bundled, samples, prompt="box", progress=False)
    point = eval_prompts(bundled, samples, prompt="point", progress=False)
    assert box["num_masks"] == 20
    assert box["miou"] >= BOX_FLOOR, box
    assert point["miou"] >= POINT_FLOOR, point


def test_cli_segment_uses_the_bundled_model(tmp_path, capsys):
    from pocketsam.cli import main

    out = tmp_path / "seg"
    assert main(["segment", str(EXAMPLES / "scene.jpg"), "--point", "190,155", "--out", str(out)]) == 0
    records = json.loads((out / "masks.json").read_text())["masks"]
    assert len(records) == 1 and (out / "overlay.png").exists()
    x, y, w, h = records[0]["bbox"]
    assert x <= 190 <= x + w and y <= 155 <= y + h  # the mask contains the clicked point's object


BOX_FLOOR = 0.38
POINT_FLOOR = 0.32


def test_bundled_model_recommends_its_everything_thresholds(bundled, tmp_path, capsys):
    """SAM's filters (0.88 / 0.95) drop every mask of this small model; it records its own
    (chosen with bench/everything_thresholds.py), and `pocketsam everything` uses them."""
    from pocketsam.cli import main

    assert bundled.everything_defaults == {"pred_iou_thresh": 0.4, "stability_score_thresh": 0.6, "high_score_thresh": 1.0}
    out = tmp_path / "every"
    assert main(["everything", str(EXAMPLES / "scene.jpg"), "--mode", "hierarchical", "--out", str(out)]) == 0
    assert "recommended by the checkpoint" in capsys.readouterr().out
    doc = json.loads((out / "scene" / "annotations.json").read_text())
    assert len(doc["annotations"]) >= 5
    assert sum(doc["stats"]["prompts"].values()) < 64 + 1024  # the dense pass skipped covered points


def test_bundled_model_finds_objects_itself(tmp_path, capsys):
    """Its proposal head makes `everything --mode boxes` work with no --boxes."""
    out = tmp_path / "boxes"
    assert main(["everything", str(EXAMPLES / "scene.jpg"), "--mode", "boxes", "--out", str(out)]) == 0
    assert "the checkpoint's own proposal head" in capsys.readouterr().out
    doc = json.loads((out / "scene" / "annotations.json").read_text())
    assert 5 <= len(doc["annotations"]) <= 100  # scene.jpg has 20 objects; measured: 33 masks
