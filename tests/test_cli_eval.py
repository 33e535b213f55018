"""``pocketsam eval`` end to end on tiny generated scenes with the golden random-weight
checkpoint: the numbers are meaningless, so only the output format and exit codes are
checked. One image per command keeps this to a handful of encoder passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocketsam.cli import main
from pocketsam.data import SA1BReader
from pocketsam.data.synth import generate_dataset

from conftest import FIXTURE_VIT_T

CKPT = FIXTURE_VIT_T  # a small vit_t-layout checkpoint in the repository (tests/fixtures/golden)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaldata")
    data = root / "sa1b"
    generate_dataset(data, 2, size=(64, 80), seed=3, workers=1, progress=False)
    reader = SA1BReader(data)
    images, anns, dets = [], [], []
    for s in reader:
        assert len(s.instances) >= 2
        images.append({"id": s.image_id, "file_name": s.image_path.name, "width": s.width, "height": s.height})
        for inst in s.instances:
            anns.append({"id": inst.id, "image_id": s.image_id, "category_id": 1, "segmentation": inst.rle_str,
                         "bbox": inst.bbox, "area": inst.area, "iscrowd": 0})
            dets.append({"image_id": s.image_id, "category_id": 1, "bbox": inst.bbox, "score": 0.9})
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    (root / "dets.json").write_text(json.dumps(dets[:3]))
    return {"root": root, "data": data, "ann": root / "instances.json", "dets": root / "dets.json"}


def _run(args: list[str], out: Path) -> dict:
    assert main([*args, "--checkpoint", str(CKPT), "--max-images", "1", "--quiet", "--output", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("prompt", ["point", "box"])
def test_eval_prompts(scenes, prompt, tmp_path, capsys):
    res = _run(["eval", "prompts", "--data", str(scenes["data"]), "--prompt", prompt, "--max-masks-per-image", "2"],
               tmp_path / "r.json")
    assert res["prompt"] == prompt and res["num_masks"] == 2 and res["num_images"] == 1
    assert 0.0 <= res["miou"] <= 1.0 and res["seconds_per_image"] > 0
    out = capsys.readouterr().out
    assert "miou" in out and "num_masks" in out and "wrote" in out


def test_eval_coco(scenes, tmp_path, capsys):
    res = _run(["eval", "coco", "--images", str(scenes["data"]), "--annotations", str(scenes["ann"]),
                "--detections", str(scenes["dets"])], tmp_path / "c.json")
    for key in ("mask_ap", "mask_ap50", "mask_ap75", "mask_ap_small"):
        assert key in res and (res[key] is None or 0.0 <= res[key] <= 1.0)
    assert res["num_images"] == 1 and res["num_detections"] >= 1
    assert "mask_ap" in capsys.readouterr().out


def test_eval_everything_grid(scenes, tmp_path):
    res = _run(["eval", "everything", "--data", str(scenes["data"]), "--mode", "grid", "--points-per-side", "2"],
               tmp_path / "e.json")
    assert set(res) >= {"ar@100", "ar@1000", "precision@50", "prompts_per_image", "seconds_per_image"}
    assert 0.0 <= res["ar@100"] <= res["ar@1000"] <= 1.0
    assert res["prompts_per_image"] == 4 and res["mode"] == "grid"
    # with the filters off every de-duplicated candidate is returned and scored
    loose = _run(["eval", "everything", "--data", str(scenes["data"]), "--mode", "grid", "--points-per-side", "2",
                  "--pred-iou-thresh", "-100", "--stability-score-thresh", "0"], tmp_path / "l.json")
    assert loose["proposals_per_image"] >= max(1.0, res["proposals_per_image"])
    assert 0.0 <= loose["precision@50"] <= 1.0 and loose["ar@1000"] >= res["ar@1000"]
    assert (loose["pred_iou_thresh"], loose["stability_score_thresh"]) == (-100, 0)  # reported with the results


def test_eval_everything_boxes(scenes, tmp_path):
    res = _run(["eval", "everything", "--data", str(scenes["data"]), "--mode", "boxes", "--boxes", str(scenes["dets"])],
               tmp_path / "b.json")
    assert 0.0 <= res["ar@100"] <= 1.0 and res["prompts_per_image"] >= 1


def test_eval_errors(scenes, tmp_path, capsys, monkeypatch):
    from pocketsam import weights

    monkeypatch.setattr(weights, "ASSETS", tmp_path / "no_assets")  # an installation without the bundled model
    assert main(["eval", "prompts", "--data", str(scenes["data"]), "--quiet"]) == 2
    assert "no bundled model" in capsys.readouterr().err
    # boxes mode without --boxes needs a checkpoint with a proposal head
    assert main(["eval", "everything", "--data", str(scenes["data"]), "--mode", "boxes", "--checkpoint", str(CKPT)]) == 2
    err = capsys.readouterr().err
    assert "no proposal head" in err and "--boxes" in err
    assert main(["eval", "everything", "--data", str(scenes["data"]), "--pred-iou-thresh", "2"]) == 2
    assert "must be <= 1" in capsys.readouterr().err
    assert main(["eval", "prompts", "--data", str(tmp_path / "none"), "--checkpoint", str(CKPT)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "prompts", "--data", str(scenes["data"]), "--max-images", "0"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2]}]))
    assert main(["eval", "coco", "--images", str(scenes["data"]), "--annotations", str(scenes["ann"]),
                 "--detections", str(bad), "--checkpoint", str(CKPT)]) == 2
    assert "entry 0 has a bad bbox" in capsys.readouterr().err


BAD_ENTRIES = [  # (entry with the image id as IMG, what the one error line says)
    ({"score": float("nan")}, "has score nan"),
    ({"score": None}, "has no score"),  # None: key left out
    ({"bbox": [1, 2, -3, 4]}, "has a bad bbox [1, 2, -3, 4]"),
    ({"bbox": [1, 2, 3, float("inf")]}, "has a bad bbox"),
    ({"image_id": ["IMG"]}, "has image_id ["),
    ({"image_id": {"id": "IMG"}}, "has image_id {"),
    ({"category_id": "1"}, "has category_id '1'"),
]


def _detections(path: Path, image_id: int, change: dict) -> Path:
    entry = {"image_id": image_id, "bbox": [1, 2, 10, 12], "score": 0.9, "category_id": 1}
    for k, v in change.items():
        if v is None:
            del entry[k]
        else:
            entry[k] = json.loads(json.dumps(v).replace('"IMG"', str(image_id)))
    good = {"image_id": image_id, "bbox": [5, 5, 10, 10], "score": 0.5, "category_id": 1}
    path.write_text(json.dumps([good, entry]))  # the bad one is entry 1
    return path


@pytest.mark.parametrize("change,message", BAD_ENTRIES)
def test_one_detection_rule_set_for_eval_coco_eval_everything_and_everything(scenes, tmp_path, capsys, monkeypatch,
                                                                              change, message):
    """eval coco, eval everything --boxes and everything --mode boxes read detections with
    the same validating reader: each bad entry is one error line, before any model is built."""
    import pocketsam.checkpoints.build as ckpt

    monkeypatch.setattr(ckpt, "create_model", lambda *a, **k: pytest.fail("model built before the detections were checked"))
    sample = SA1BReader(scenes["data"])[0]
    dets = _detections(tmp_path / "dets.json", sample.image_id, change)
    commands = [
        ["eval", "coco", "--images", str(scenes["data"]), "--annotations", str(scenes["ann"]), "--detections", str(dets)],
        ["eval", "everything", "--data", str(scenes["data"]), "--mode", "boxes", "--boxes", str(dets)],
        ["everything", str(sample.image_path), "--mode", "boxes", "--boxes", str(dets), "--out", str(tmp_path / "o")],
    ]
    for argv in commands:
        assert main([*argv, "--checkpoint", str(CKPT)]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"error: detections file '{dets}': entry 1 {message}") and err.count("\n") == 1, (argv, err)


def test_eval_coco_refuses_unknown_categories(scenes, tmp_path, capsys):
    sample = SA1BReader(scenes["data"])[0]
    dets = _detections(tmp_path / "dets.json", sample.image_id, {"category_id": 5})
    argv = ["eval", "coco", "--images", str(scenes["data"]), "--annotations", str(scenes["ann"]), "--detections", str(dets)]
    assert main([*argv, "--checkpoint", str(CKPT)]) == 2
    err = capsys.readouterr().err
    assert "entry 1 has category_id 5, which is not a known category (1)" in err and err.count("\n") == 1
    missing = _detections(tmp_path / "nocat.json", sample.image_id, {"category_id": None})
    assert main(["eval", "coco", "--images", str(scenes["data"]), "--annotations", str(scenes["ann"]),
                 "--detections", str(missing), "--checkpoint", str(CKPT)]) == 2
    assert "entry 1 has category_id None" in capsys.readouterr().err


def test_eval_everything_reports_proposals_for_no_evaluated_image(scenes, tmp_path, capsys):
    sample = SA1BReader(scenes["data"])[0]
    dets = tmp_path / "dets.json"
    box = {"bbox": [1, 2, 10, 12], "score": 0.9, "category_id": 1}
    dets.write_text(json.dumps([{"image_id": sample.image_id, **box}, {"image_id": 4242, **box}, {"image_id": 4242, **box}]))
    argv = ["eval", "everything", "--data", str(scenes["data"]), "--mode", "boxes", "--boxes", str(dets)]
    res = _run(argv, tmp_path / "r.json")
    assert res["proposals_per_image"] >= 1
    err = capsys.readouterr().err
    assert f"warning: 2 of 3 detections in '{dets}' (for 1 image(s): 4242) are for none of the 1 image(s) evaluated" in err

    dets.write_text(json.dumps([{"image_id": 4242, **box}]))
    assert main([*argv, "--checkpoint", str(CKPT), "--quiet"]) == 2  # AR 0.0 would say nothing about the model
    err = capsys.readouterr().err
    assert err.startswith(f"error: none of the 1 detections in '{dets}' is for the 2 image(s) evaluated") and err.count("\n") == 1


def test_eval_prompts_against_a_teacher(scenes, tmp_path, capsys):
    """miou_vs_teacher: a model against itself agrees exactly; against another model with
    another input size, less; the ground-truth mIoU stays as it was."""
    import torch
    from conftest import tiny_config

    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.models import create_model

    torch.manual_seed(0)
    student = save_checkpoint(create_model(tiny_config(256)).eval(), tmp_path / "student.safetensors")
    base = ["eval", "prompts", "--data", str(scenes["data"]), "--prompt", "point", "--max-masks-per-image", "3",
            "--max-images", "1", "--quiet"]
    plain = tmp_path / "plain.json"
    assert main([*base, "--checkpoint", str(student), "--output", str(plain)]) == 0
    plain = json.loads(plain.read_text())
    assert "miou_vs_teacher" not in plain
    capsys.readouterr()

    same = tmp_path / "same.json"
    assert main([*base, "--checkpoint", str(student), "--against", str(student), "--output", str(same)]) == 0
    assert "miou_vs_teacher" in capsys.readouterr().out
    same = json.loads(same.read_text())
    assert same["miou_vs_teacher"] == 1.0 and same["miou"] == plain["miou"] and same["num_masks"] == 3

    other = tmp_path / "other.json"  # the golden vit_t runs at 1024², the student at 256²
    assert main([*base, "--checkpoint", str(student), "--against", str(CKPT), "--output", str(other)]) == 0
    other = json.loads(other.read_text())
    assert 0.0 <= other["miou_vs_teacher"] < 1.0 and other["miou"] == plain["miou"]
    sizes = [k for k in ("small", "medium", "large") if other[f"num_masks_{k}"]]  # by GT area, as miou_{size}
    assert all(same[f"miou_vs_teacher_{k}"] == 1.0 for k in sizes)
    by_size = sum(other[f"miou_vs_teacher_{k}"] * other[f"num_masks_{k}"] for k in sizes) / other["num_masks"]
    assert by_size == pytest.approx(other["miou_vs_teacher"])

    assert main([*base, "--checkpoint", str(student), "--against", str(tmp_path / "missing.pt")]) == 2
    assert "teacher checkpoint" in capsys.readouterr().err
