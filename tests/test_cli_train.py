"""`pocketsam train` end to end on a few generated scenes, and its input errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pocketsam import build_sam
from pocketsam.cli import main


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "o")]) == 2
    assert "no training data given" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "pocketsam data synth" in err and "Traceback" not in err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--arch", "vit_zz"]) == 2
    assert "unknown architecture 'vit_zz'" in capsys.readouterr().err


@pytest.mark.slow
def test_train_on_generated_scenes_and_export(tmp_path):
    data, out = tmp_path / "scenes", tmp_path / "run"
    assert main(["data", "synth", "--out", str(data), "--num-images", "6", "--size", "64,64", "--seed", "3"]) == 0
    cmd = [sys.executable, "-m", "pocketsam", "train", "--data", str(data), "--out", str(out), "--img-size", "64",
           "--steps", "3", "--batch-size", "2", "--masks-per-image", "4", "--workers", "0", "--val-images", "2",
           "--warmup", "1", "--log-every", "1", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert "val_miou_point" in records[-1] and "val_miou_box" in records[-1]
    model = build_sam(checkpoint=out / "model.pth")  # configuration recovered from the tensors alone
    assert model.img_size == 64 and model.config.encoder.embed_dims == (32, 64, 128, 160)

    # progressive resizing: fine-tune those weights at twice the input size
    finer = tmp_path / "finer"
    cmd = cmd[:cmd.index("--out")] + ["--out", str(finer), "--init", str(out / "model.pth"), "--img-size", "128",
                                       "--steps", "1", "--batch-size", "2", "--masks-per-image", "2", "--workers", "0",
                                       "--val-images", "2", "--warmup", "1", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = build_sam(checkpoint=finer / "model.safetensors")
    assert model.img_size == 128 and model.prompt_encoder.image_embedding_size == (8, 8)
