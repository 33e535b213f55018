"""``pocketsam everything``: outputs, validation before loading the model, resumable folders."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pocketsam.cli import main
from pocketsam.masks import decode_rle

from conftest import FIXTURE_VIT_T

# a small vit_t-layout checkpoint in the repository (tests/fixtures/golden): what is tested
# here, the command, does not depend on the model's size, and a fresh clone has it
CKPT = FIXTURE_VIT_T
FAST = ["--points-per-side", "2", "--pred-iou-thresh", "-100", "--stability-score-thresh", "0.2"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


def _write_images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        img = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
        img[5 + i : 25, 10:30] = [200, 20, 20]
        p = folder / f"img{i}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


def test_folder_run_outputs_and_resume(tmp_path, capsys):
    _write_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    args = ["everything", str(tmp_path / "in"), "--checkpoint", str(CKPT), "--mode", "grid", *FAST, "--out", str(out)]
    assert main(args) == 0
    docs = {}
    for i in range(3):
        d = out / f"img{i}"
        doc = json.loads((d / "annotations.json").read_text())
        assert (d / "overlay.png").is_file()
        assert Image.open(d / "overlay.png").size == (56, 40)
        assert doc["image"] == {"file_name": f"img{i}.png", "height": 40, "width": 56,
                                "sha256": hashlib.sha256((tmp_path / "in" / f"img{i}.png").read_bytes()).hexdigest()}
        assert list(doc) == ["image", "provenance", "annotations", "stats"]
        assert doc["stats"]["prompts"] == {"grid": 4}
        for k, ann in enumerate(doc["annotations"], start=1):
            assert ann["id"] == k
            assert set(ann) >= {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
            assert isinstance(ann["segmentation"]["counts"], str)
            assert decode_rle(ann["segmentation"]).sum() == ann["area"]
        docs[i] = doc
    assert not list(out.rglob("*.tmp*"))  # atomic writes leave no temporaries

    # interrupted run: one result missing → only that image is recomputed
    mtimes = {i: os.stat(out / f"img{i}" / "annotations.json").st_mtime_ns for i in range(3)}
    (out / "img1" / "annotations.json").unlink()
    time.sleep(0.01)
    capsys.readouterr()
    assert main(args) == 0
    assert "1 image(s) segmented, 2 already done" in capsys.readouterr().out
    assert os.stat(out / "img0" / "annotations.json").st_mtime_ns == mtimes[0]
    assert os.stat(out / "img2" / "annotations.json").st_mtime_ns == mtimes[2]
    redone = json.loads((out / "img1" / "annotations.json").read_text())
    assert redone["annotations"] == docs[1]["annotations"]
    # everything done → nothing loaded, nothing rewritten
    assert main(args) == 0
    assert "already done" in capsys.readouterr().out


def test_boxes_mode_single_image(tmp_path):
    (img,) = _write_images(tmp_path, 1)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps({
        "images": [{"id": 3, "file_name": "img0.png"}],
        "annotations": [{"image_id": 3, "bbox": [10, 5, 20, 20], "score": 0.9, "category_id": 1},
                        {"image_id": 3, "bbox": [0, 0, 4, 4], "score": 0.1, "category_id": 1}],
    }))
    out = tmp_path / "out"
    rc = main(["everything", str(img), "--checkpoint", str(CKPT), "--mode", "boxes", "--boxes", str(dets), "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "img0" / "annotations.json").read_text())
    assert doc["stats"]["prompts"] == {"boxes": 1}
    assert len(doc["annotations"]) == 1 and doc["annotations"][0]["prompt_box"] == [10, 5, 30, 25]
    assert doc["annotations"][0]["category_id"] == 1 and doc["annotations"][0]["score"] == 0.9


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--mode", "boxes"], "needs proposals: this checkpoint has no proposal head"),
        (["--mode", "boxes", "--boxes", "BAD"], "not valid JSON"),
        (["--mode", "boxes", "--boxes", "MISSING"], "does not exist"),
        (["--points-per-side", "0"], "points-per-side"),
        (["--checkpoint", "/nonexistent.pt"], "does not exist"),
    ],
)
def test_validation_before_model(tmp_path, capsys, monkeypatch, extra, message):
    import pocketsam

    monkeypatch.setattr(pocketsam, "build_sam", lambda *a, **k: pytest.fail("model loaded before validation"), raising=False)
    (img,) = _write_images(tmp_path, 1)
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    extra = [str(bad) if e == "BAD" else str(tmp_path / "missing.json") if e == "MISSING" else e for e in extra]
    if "--checkpoint" not in extra:
        extra += ["--checkpoint", str(CKPT)]
    rc = main(["everything", str(img), *extra, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_missing_input_and_empty_folder(tmp_path, capsys):
    assert main(["everything", str(tmp_path / "nope.jpg"), "--checkpoint", str(CKPT), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["everything", str(tmp_path / "empty"), "--checkpoint", str(CKPT), "--out", str(tmp_path / "o")]) == 2
    assert "has no images" in capsys.readouterr().err


def test_thresholds_left_out_come_from_the_checkpoint(tmp_path, capsys):
    from pocketsam import build_sam
    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.everything import SamHierarchicalMaskGenerator, make_generator, resolve_settings

    sam = build_sam(checkpoint=CKPT)
    assert resolve_settings("grid", sam, pred_iou_thresh=None) == ({}, {})  # official weights: SAM's defaults
    sam.everything_defaults = {"pred_iou_thresh": 0.3, "stability_score_thresh": 0.6, "high_score_thresh": 1.5}
    kwargs, from_model = resolve_settings("grid", sam, pred_iou_thresh=0.5, stability_score_thresh=None)
    assert kwargs == {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.6} and from_model == {"stability_score_thresh": 0.6}
    gen = make_generator("hierarchical", sam, points_per_side=4)
    assert isinstance(gen, SamHierarchicalMaskGenerator)
    assert (gen.pred_iou_thresh, gen.stability_score_thresh, gen.high_score_thresh) == (0.3, 0.6, 1.5)
    assert make_generator("boxes", sam).pred_iou_thresh == 0.0  # box prompts keep MobileSAMv2's no-filter default

    ckpt = save_checkpoint(sam, tmp_path / "calibrated.safetensors")
    (img,) = _write_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    assert main(["everything", str(img), "--checkpoint", str(ckpt), "--mode", "hierarchical", "--points-per-side", "4",
                 "--stability-score-thresh", "0.2", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "--pred-iou-thresh 0.3" in said and "--high-score-thresh 1.5" in said and "stability" not in said
    assert (out / "img0" / "annotations.json").is_file()

    assert main(["everything", str(img), "--checkpoint", str(ckpt), "--high-score-thresh", "2", "--out", str(out)]) == 2
    assert "only used with --mode hierarchical" in capsys.readouterr().err


def test_modes_own_the_mode_knowledge():
    import subprocess
    import sys
    from types import SimpleNamespace

    from pocketsam.errors import InputError
    from pocketsam.everything import GENERATORS, ObjectAwareMaskGenerator
    from pocketsam.everything.modes import (
        MODES,
        RESULT_SETTINGS,
        THRESHOLDS,
        check_mode,
        check_proposals,
        default_setting,
        misplaced_thresholds,
        model_mode,
    )

    assert tuple(GENERATORS) == MODES == tuple(THRESHOLDS) == tuple(RESULT_SETTINGS)
    assert GENERATORS["boxes"] is ObjectAwareMaskGenerator
    assert default_setting("hierarchical", "high_score_thresh") == 8.5
    assert default_setting("hierarchical", "crop_n_layers") == 0  # from the grid generator it extends
    assert default_setting("boxes", "pred_iou_thresh") == 0.0
    assert misplaced_thresholds("grid", {"high_score_thresh": 2.0, "pred_iou_thresh": 0.5}) == \
        [("high_score_thresh", ("hierarchical",))]
    assert misplaced_thresholds("hierarchical", {"high_score_thresh": 2.0}) == []
    with pytest.raises(InputError, match="unknown mode 'dense'"):
        check_mode("dense")
    with pytest.raises(InputError, match="needs proposals"):
        check_proposals("boxes", False, False)
    check_proposals("boxes", True, False)
    check_proposals("grid", False, False)
    assert model_mode(SimpleNamespace(has_proposal_head=True)) == "boxes"  # the web app's Everything button
    assert model_mode(SimpleNamespace(has_proposal_head=False)) == "hierarchical"
    # the command line reads the names without importing torch (nor the generators)
    code = "import sys, pocketsam.everything.modes; print(sorted(m for m in sys.modules if m == 'torch'))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A very small random model at a 256² input (fast: one encoder pass is milliseconds)."""
    import torch
    from conftest import tiny_config

    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.models import create_model

    torch.manual_seed(0)
    return save_checkpoint(create_model(tiny_config()).eval(), tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


def test_colliding_names_get_distinct_stable_folders_and_resume_checks_the_file(tmp_path, capsys, tiny_ckpt):
    from pocketsam.everything.results import output_names

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = ["a.jpg", "a.JPG", "a.png", "a_jpg.png", "b.png"]
    for name in names:
        Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8)).save(folder / name)
    files = sorted(folder.iterdir())
    folders = output_names(files)
    assert len({n.casefold() for n in folders}) == 5  # unique, even on a case-insensitive file system
    assert output_names(files[::-1]) == folders[::-1]  # a function of the names, not of their order
    assert dict(zip([f.name for f in files], folders))["b.png"] == "b" and "a_png" in folders

    out = tmp_path / "out"
    args = ["everything", str(folder), "--checkpoint", str(tiny_ckpt), *FAST, "--out", str(out)]
    assert main(args) == 0
    assert "5 image(s) segmented, 0 already done, 0 failed" in capsys.readouterr().out
    recorded = {json.loads((out / n / "annotations.json").read_text())["image"]["file_name"]: n for n in folders}
    assert recorded == {f.name: n for f, n in zip(files, folders)}  # every result kept, each saying whose it is
    assert main(args) == 0
    assert "all 5 image(s) already done" in capsys.readouterr().out

    # a result recording another file's name is not this image's: it is recomputed
    doc_path = out / "a_png" / "annotations.json"
    doc = json.loads(doc_path.read_text())
    doc["image"]["file_name"] = "other.png"
    doc_path.write_text(json.dumps(doc))
    assert main(args) == 0
    assert "1 image(s) segmented, 4 already done" in capsys.readouterr().out
    assert json.loads(doc_path.read_text())["image"]["file_name"] == "a.png"


def test_non_finite_model_on_a_folder_is_a_clear_error_not_an_abort(tmp_path, capsys, monkeypatch, tiny_ckpt):
    import torch

    import pocketsam
    from pocketsam.checkpoints import read_checkpoint

    _write_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    sd, _ = read_checkpoint(tiny_ckpt)
    sd["image_encoder.neck.0.weight"] = sd["image_encoder.neck.0.weight"].clone().fill_(float("inf"))
    torch.save(sd, tmp_path / "inf.pth")
    args = ["everything", str(tmp_path / "in"), *FAST, "--out", str(out)]
    assert main([*args, "--checkpoint", str(tmp_path / "inf.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "image_encoder.neck.0.weight" in err and "Traceback" not in err

    real_build = pocketsam.build_sam

    def nan_at_run_time(*a, **k):
        model = real_build(*a, **k)
        with torch.no_grad():
            model.mask_decoder.iou_prediction_head.layers[-1].bias.fill_(float("nan"))
        return model

    monkeypatch.setattr(pocketsam, "build_sam", nan_at_run_time)
    assert main([*args, "--checkpoint", str(tiny_ckpt)]) == 1  # every image reported, none written
    said = capsys.readouterr().out
    assert "0 image(s) segmented, 0 already done, 2 failed" in said
    assert said.count("NaN or infinite mask logits or scores") == 2
    assert not list(out.rglob("annotations.json"))


def test_detections_for_no_image_are_reported_not_dropped(tmp_path, capsys, monkeypatch, tiny_ckpt):
    _write_images(tmp_path / "in", 2)
    dets = tmp_path / "dets.json"
    out = tmp_path / "out"

    def write(annotations):
        dets.write_text(json.dumps({"images": [{"id": 1, "file_name": "img0.png"}, {"id": 2, "file_name": "img1.png"}],
                                    "annotations": annotations}))

    def det(image_id, score=0.9):
        return {"image_id": image_id, "bbox": [10, 5, 20, 20], "score": score}

    args = ["everything", str(tmp_path / "in"), "--checkpoint", str(tiny_ckpt), "--mode", "boxes", "--boxes", str(dets),
            "--out", str(out)]
    write([det(1), det(2), det(99), det(99, 0.8), det(7)])
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"warning: 3 of 5 detections in '{dets}' (for 2 image(s): 99, 7) are for none of "
                                   f"folder '{tmp_path / 'in'}'; they are not used\n")
    assert "2 image(s) segmented, 0 already done, 0 failed" in captured.out

    import pocketsam.checkpoints.build as ckpt

    monkeypatch.setattr(ckpt, "create_model", lambda *a, **k: pytest.fail("model built although nothing can match"))
    write([det(99), det(7)])
    assert main([*args, "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: none of the 2 detections in '{dets}' is for folder") and err.count("\n") == 1
    assert main(["everything", str(tmp_path / "in" / "img0.png"), *args[2:]]) == 2  # one image: the same rule
    assert f"is for image 'img0.png' (they are for image 99, 7)" in capsys.readouterr().err


def _args(folder, ckpt, out, *extra):
    return ["everything", str(folder), "--checkpoint", str(ckpt), *FAST, "--out", str(out), *extra]


def test_resume_records_provenance_and_refuses_results_made_differently(tmp_path, capsys, monkeypatch, tiny_ckpt):
    import torch
    from conftest import tiny_config

    import pocketsam
    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.models import create_model
    from pocketsam.version import __version__

    _write_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert main(_args(tmp_path / "in", tiny_ckpt, out)) == 0
    doc_path = out / "img0" / "annotations.json"
    prov = json.loads(doc_path.read_text())["provenance"]
    assert prov == {
        "pocketsam": __version__,
        "checkpoint": {"file": "tiny.safetensors", "sha256": hashlib.sha256(tiny_ckpt.read_bytes()).hexdigest()},
        "model_type": None,
        "mode": "grid",
        "settings": {"points_per_side": 2, "crop_n_layers": 0, "pred_iou_thresh": -100.0, "stability_score_thresh": 0.2,
                     "box_nms_thresh": 0.7, "min_mask_region_area": 0},
        "proposals": None,
    }
    capsys.readouterr()
    before = doc_path.read_bytes()

    # another model, mode or threshold: one error line, before any model is loaded, nothing touched
    torch.manual_seed(1)
    other = save_checkpoint(create_model(tiny_config()).eval(), tmp_path / "other.safetensors")
    real_build = pocketsam.build_sam
    monkeypatch.setattr(pocketsam, "build_sam", lambda *a, **k: pytest.fail("model loaded although the run is refused"))
    cases = [
        (_args(tmp_path / "in", other, out), "checkpoint.sha256: "),
        (_args(tmp_path / "in", tiny_ckpt, out, "--mode", "hierarchical"), "mode: grid → hierarchical"),
        (_args(tmp_path / "in", tiny_ckpt, out, "--stability-score-thresh", "0.3"), "settings.stability_score_thresh: 0.2 → 0.3"),
        (_args(tmp_path / "in", tiny_ckpt, out, "--points-per-side", "3"), "settings.points_per_side: 2 → 3"),
    ]
    for args, what in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: 2 finished results in '{out}' were made differently (") and what in err, err
        assert "--overwrite" in err and err.count("\n") == 1
    assert doc_path.read_bytes() == before
    # what changes no result is not a difference: the batch size, or renaming the checkpoint
    renamed = tmp_path / "renamed.safetensors"
    renamed.write_bytes(tiny_ckpt.read_bytes())
    assert main([*_args(tmp_path / "in", renamed, out), "--points-per-batch", "3"]) == 0
    assert "all 2 image(s) already done" in capsys.readouterr().out

    # --overwrite replaces them, and the new provenance is recorded
    monkeypatch.setattr(pocketsam, "build_sam", real_build)
    assert main([*_args(tmp_path / "in", other, out), "--overwrite"]) == 0
    said = capsys.readouterr().out
    assert "replaced 2 result(s) made with other settings" in said and "2 image(s) segmented, 0 already done" in said
    assert json.loads(doc_path.read_text())["provenance"]["checkpoint"]["sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()
    assert main(_args(tmp_path / "in", other, out)) == 0
    assert "all 2 image(s) already done" in capsys.readouterr().out

    # a changed image is recomputed (its old result describes a picture that no longer exists)
    img = np.asarray(Image.open(tmp_path / "in" / "img1.png")).copy()
    img[0, 0] = 255 - img[0, 0]
    Image.fromarray(img).save(tmp_path / "in" / "img1.png")
    assert main(_args(tmp_path / "in", other, out)) == 0
    said = capsys.readouterr().out
    assert "recomputed 1 image(s) whose file changed" in said and "1 image(s) segmented, 1 already done" in said

    # a result from before provenance was recorded is not trusted either
    doc = json.loads(doc_path.read_text())
    del doc["provenance"]
    doc_path.write_text(json.dumps(doc))
    assert main(_args(tmp_path / "in", other, out)) == 2
    assert "1 finished result in" in (err := capsys.readouterr().err) and "no provenance recorded" in err


def test_resume_compares_thresholds_as_applied(tmp_path, capsys, tiny_ckpt):
    """A threshold given explicitly equal to the checkpoint's recommendation is the same run."""
    from pocketsam import build_sam
    from pocketsam.checkpoints import save_checkpoint

    sam = build_sam(checkpoint=tiny_ckpt)
    sam.everything_defaults = {"pred_iou_thresh": -50.0, "stability_score_thresh": 0.1}
    ckpt = save_checkpoint(sam, tmp_path / "calibrated.safetensors")
    _write_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    base = ["everything", str(tmp_path / "in"), "--checkpoint", str(ckpt), "--points-per-side", "2", "--out", str(out)]
    assert main(base) == 0
    settings = json.loads((out / "img0" / "annotations.json").read_text())["provenance"]["settings"]
    assert settings["pred_iou_thresh"] == -50.0 and settings["stability_score_thresh"] == 0.1
    capsys.readouterr()
    assert main([*base, "--pred-iou-thresh", "-50", "--stability-score-thresh", "0.1"]) == 0
    assert "already done" in capsys.readouterr().out
    assert main([*base, "--pred-iou-thresh", "-40"]) == 2
    assert "settings.pred_iou_thresh: -50.0 → -40.0" in capsys.readouterr().err


def test_boxes_provenance_is_the_images_own_detections(tmp_path, capsys, tiny_ckpt):
    _write_images(tmp_path / "in", 2)
    dets = tmp_path / "dets.json"
    out = tmp_path / "out"

    def write(extra_score):
        dets.write_text(json.dumps({"images": [{"id": 1, "file_name": "img0.png"}, {"id": 2, "file_name": "img1.png"}],
                                    "annotations": [{"image_id": 1, "bbox": [10, 5, 20, 20], "score": 0.9},
                                                    {"image_id": 2, "bbox": [10, 5, 20, 20], "score": extra_score}]}))

    args = ["everything", str(tmp_path / "in"), "--checkpoint", str(tiny_ckpt), "--mode", "boxes", "--boxes", str(dets),
            "--out", str(out)]
    write(0.9)
    assert main(args) == 0
    prov = json.loads((out / "img0" / "annotations.json").read_text())["provenance"]
    assert prov["proposals"]["source"] == "detections" and prov["proposals"]["file"] == "dets.json"
    assert prov["settings"] == {"score_thresh": 0.4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                                "box_nms_thresh": 0.7, "min_mask_region_area": 0}
    capsys.readouterr()
    write(0.8)  # only img1's detections changed
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 finished result in" in err and "proposals.sha256" in err
    assert main([*args, "--overwrite"]) == 0
    assert "1 image(s) segmented, 1 already done" in capsys.readouterr().out


def test_format_coco_writes_one_instances_file_for_the_folder(tmp_path, capsys, tiny_ckpt):
    from pocketsam.eval.metrics import coco_mask_ap

    _write_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    args = [*_args(tmp_path / "in", tiny_ckpt, out), "--format", "coco", "--stability-score-thresh", "-100",
            "--points-per-side", "4"]
    assert main(args) == 0
    assert f"wrote {out / 'instances.json'}: 3 image(s), " in capsys.readouterr().out
    doc = json.loads((out / "instances.json").read_text())
    assert set(doc) == {"info", "images", "annotations", "categories"}
    assert doc["info"]["provenance"]["checkpoint"]["file"] == "tiny.safetensors"
    assert doc["images"] == [{"id": i + 1, "file_name": f"img{i}.png", "height": 40, "width": 56} for i in range(3)]
    assert doc["categories"] == [{"id": 1, "name": "object"}]
    per_image = [json.loads((out / f"img{i}" / "annotations.json").read_text())["annotations"] for i in range(3)]
    assert len(doc["annotations"]) == sum(map(len, per_image)) > 0
    assert [a["id"] for a in doc["annotations"]] == list(range(1, len(doc["annotations"]) + 1))
    flat = [(i + 1, r) for i, recs in enumerate(per_image) for r in recs]
    for ann, (image_id, rec) in zip(doc["annotations"], flat):
        assert ann["image_id"] == image_id and ann["category_id"] == 1 and ann["iscrowd"] == 0
        assert ann["score"] == rec["predicted_iou"] and ann["bbox"] == rec["bbox"]
        mask = decode_rle(ann["segmentation"])
        assert (mask == decode_rle(rec["segmentation"])).all() and mask.sum() == ann["area"]
    # pycocotools reads it: scored against itself, every mask is found
    assert coco_mask_ap(doc, doc["annotations"])["mask_ar100"] == 1.0

    # rebuilt when nothing is left to compute, too
    (out / "instances.json").unlink()
    assert main(args) == 0
    assert "already done" in (said := capsys.readouterr().out) and "wrote" in said
    assert json.loads((out / "instances.json").read_text()) == doc


def test_format_coco_boxes_mode_keeps_detection_ids_categories_and_scores(tmp_path, capsys, tiny_ckpt):
    _write_images(tmp_path / "in", 2)
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps({
        "images": [{"id": 11, "file_name": "img0.png"}, {"id": 12, "file_name": "img1.png"}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 18, "name": "dog"}],
        "annotations": [{"image_id": 11, "bbox": [10, 5, 20, 20], "score": 0.9, "category_id": 3},
                        {"image_id": 12, "bbox": [10, 5, 20, 20], "score": 0.8, "category_id": 18},
                        {"image_id": 12, "bbox": [30, 20, 20, 15], "score": 0.7, "category_id": 3}],
    }))
    out = tmp_path / "out"
    assert main(["everything", str(tmp_path / "in"), "--checkpoint", str(tiny_ckpt), "--mode", "boxes", "--boxes",
                 str(dets), "--box-nms-thresh", "1", "--out", str(out), "--format", "coco"]) == 0
    doc = json.loads((out / "instances.json").read_text())
    assert [im["id"] for im in doc["images"]] == [11, 12]
    assert doc["categories"] == [{"id": 3, "name": "cat"}, {"id": 18, "name": "dog"}]
    got = sorted((a["image_id"], a["category_id"], a["score"]) for a in doc["annotations"])
    assert got == [(11, 3, 0.9), (12, 3, 0.7), (12, 18, 0.8)]
    assert doc["info"]["provenance"]["proposals"] == {"source": "detections", "file": "dets.json"}


# ----------------------------------------------------------------- issue 24: reliability
def _tiny_images(folder: Path, sizes=(1, 2, 16, 32)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    paths = []
    for s in sizes:
        p = folder / f"s{s}.png"
        Image.fromarray(rng.integers(0, 255, (s, s, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _strict_json(path: Path):
    def refuse(name):
        raise AssertionError(f"{path}: {name} in JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("mode", ["grid", "hierarchical", "boxes"])
def test_tiny_images_give_valid_possibly_empty_results_in_every_mode(tmp_path, capsys, mode, tiny_ckpt):
    """Images of 32×32 px or smaller (#24 item 1): masks with no pixel are not masks (their
    stability score is 0/0), so they are dropped; every image gets both files, no NaN."""
    files = _tiny_images(tmp_path / "in")
    out = tmp_path / "out"
    args = ["everything", str(tmp_path / "in"), "--checkpoint", str(tiny_ckpt), "--mode", mode, "--out", str(out),
            "--points-per-side", "4", "--pred-iou-thresh", "-100", "--stability-score-thresh", "0"]
    if mode == "boxes":
        dets = tmp_path / "dets.json"
        dets.write_text(json.dumps({
            "images": [{"id": i, "file_name": f.name} for i, f in enumerate(files, 1)],
            "annotations": [{"image_id": i, "bbox": [0, 0, s, s], "score": 0.9}
                            for i, s in enumerate((1, 2, 16, 32), 1)]}))
        args = [a for a in args if a not in ("--points-per-side", "4")] + ["--boxes", str(dets)]
    assert main(args) == 0, capsys.readouterr().err
    assert "4 image(s) segmented, 0 already done, 0 failed" in capsys.readouterr().out
    for f in files:
        doc = _strict_json(out / f.stem / "annotations.json")
        assert (out / f.stem / "overlay.png").is_file()
        for ann in doc["annotations"]:
            assert ann["area"] > 0 and np.isfinite(ann["stability_score"]) and np.isfinite(ann["predicted_iou"])
            assert decode_rle(ann["segmentation"]).sum() == ann["area"]


def test_a_failing_image_is_reported_and_leaves_no_half_result(tmp_path, capsys, monkeypatch, tiny_ckpt):
    """A failure on one image of a folder (here a record the JSON cannot hold) goes into the
    summary; the other images finish; the failed image has neither file (#24 item 1)."""
    from pocketsam.everything.grid import SamAutomaticMaskGenerator
    from pocketsam.masks import encode_rle

    _write_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    real = SamAutomaticMaskGenerator.generate

    def nan_for_img1(self, image):
        records = real(self, image)
        if tuple(image[6, 10]) == (200, 20, 20) and tuple(image[5, 10]) != (200, 20, 20):  # img1's square starts at row 6
            h, w = image.shape[:2]
            return [*records, {"segmentation": encode_rle(np.ones((h, w), bool)), "area": h * w, "bbox": [0, 0, w, h],
                               "predicted_iou": 0.5, "point_coords": [[1.0, 1.0]], "stability_score": float("nan"),
                               "crop_box": [0, 0, w, h]}]
        return records

    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", nan_for_img1)
    assert main(_args(tmp_path / "in", tiny_ckpt, out)) == 1
    said = capsys.readouterr().out
    assert "2 image(s) segmented, 0 already done, 1 failed" in said and "failed: img1.png:" in said
    assert not (out / "img1").exists() or not list((out / "img1").iterdir())
    for i in (0, 2):
        assert (out / f"img{i}" / "overlay.png").is_file() and (out / f"img{i}" / "annotations.json").is_file()


def test_done_means_every_output_file_is_there(tmp_path, capsys, tiny_ckpt):
    """A deleted overlay.png is regenerated on the next run (#24 item 4)."""
    _write_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert main(_args(tmp_path / "in", tiny_ckpt, out)) == 0
    overlay = (out / "img1" / "overlay.png").read_bytes()
    (out / "img1" / "overlay.png").unlink()
    capsys.readouterr()
    assert main(_args(tmp_path / "in", tiny_ckpt, out)) == 0
    said = capsys.readouterr().out
    assert "1 image(s) segmented, 1 already done" in said and "without its overlay.png" in said
    assert (out / "img1" / "overlay.png").read_bytes() == overlay


def test_overwrite_says_which_results_were_not_replaced(tmp_path, capsys, tiny_ckpt):
    """--overwrite after a checkpoint change with one input now unreadable (#24 item 3):
    'replaced' counts only what was replaced; the rest is named."""
    import torch

    from conftest import tiny_config
    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.models import create_model

    _write_images(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert main(_args(tmp_path / "in", tiny_ckpt, out)) == 0
    torch.manual_seed(1)
    other = save_checkpoint(create_model(tiny_config()).eval(), tmp_path / "other.safetensors")
    (tmp_path / "in" / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png any more")
    capsys.readouterr()
    assert main([*_args(tmp_path / "in", other, out), "--overwrite"]) == 1
    said = capsys.readouterr().out
    assert "replaced 2 result(s) made with other settings" in said
    assert "1 result(s) made with other settings not replaced (their image failed): img2.png" in said
    assert "replaced 3" not in said
