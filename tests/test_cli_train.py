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


def _quick(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--img-size", "64", "--steps", "2", "--batch-size", "2",
            "--masks-per-image", "2", "--workers", "0", "--val-images", "0", "--warmup", "1", "--log-every", "1",
            "--rounds", "1", *extra]


def _loss_steps(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "loss" in r]


def test_run_folders_are_never_restarted_or_mixed_silently(tmp_path, capsys):
    data, out = tmp_path / "scenes", tmp_path / "run"
    assert main(["data", "synth", "--out", str(data), "--num-images", "4", "--size", "64,64", "--quiet"]) == 0
    assert main(_quick(data, out)) == 0
    first = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    # the same folder again without --resume: refused, nothing touched
    assert main(_quick(data, out)) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "metrics.jsonl").read_text() == first
    # resuming with another batch size: refused unless told
    assert main(_quick(data, out, "--resume", "--batch-size", "1", "--steps", "3")) == 2
    assert "other settings (batch_size: 2 -> 1)" in capsys.readouterr().err
    assert main(_quick(data, out, "--resume", "--batch-size", "1", "--steps", "3", "--allow-config-change")) == 0
    # a longer run may resume; metrics rows a killed run wrote past its checkpoint are dropped
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "loss": 1.0}\n{"step": 100, "lo')
    assert main(_quick(data, out, "--resume", "--steps", "4", "--allow-config-change")) == 0
    assert _loss_steps(out) == [1, 2, 3, 4]
    # a run saved before a setting existed resumes as if it had that setting's default
    import torch

    state = torch.load(out / "checkpoint_last.pt", weights_only=True)
    saved = json.loads(state["config"])
    del saved["adam_beta2"]
    state["config"] = json.dumps(saved)
    torch.save(state, out / "checkpoint_last.pt")
    assert main(_quick(data, out, "--resume", "--steps", "5")) == 0
    assert main(_quick(data, out, "--resume", "--steps", "6", "--adam-beta2", "0.99")) == 2
    assert "adam_beta2: 0.999 -> 0.99" in capsys.readouterr().err
    # --overwrite starts again
    assert main(_quick(data, out, "--overwrite")) == 0
    assert "removed the previous run's" in capsys.readouterr().out
    assert _loss_steps(out) == [1, 2]
    # a damaged checkpoint gives one error, not a traceback
    (out / "checkpoint_last.pt").write_bytes(b"\x80\x04truncated")
    assert main(_quick(data, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert "cannot resume from" in err and "Traceback" not in err


def test_training_options_are_checked_before_any_work(tmp_path, capsys):
    data = tmp_path / "scenes"
    assert main(["data", "synth", "--out", str(data), "--num-images", "4", "--size", "64,64", "--quiet"]) == 0
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["--lr", "nan"], "must be a finite number"),
        (["--lr", "-1"], "must be a finite number"),
        (["--workers", "-1"], "workers"),
        (["--adam-beta2", "1"], "adam beta2 must be in [0, 1)"),
        (["--img-size", "100"], "not a positive multiple of 64"),
        (["--resume", "--overwrite"], "contradict"),
    ]
    for extra, message in cases:
        out = tmp_path / "o"
        argv = _quick(data, out)
        argv[argv.index("--img-size") + 1:argv.index("--img-size") + 2] = ["64"]
        assert main(argv + extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
        assert not out.exists(), "nothing is created for a refused run"
    assert main(_quick(data, afile)) == 2
    assert "is a file" in capsys.readouterr().err
    # too little data to hold validation images out: said, not silent
    assert main(_quick(data, tmp_path / "v", "--val-images", "2")) == 0
    assert "validation is off" in capsys.readouterr().out


def test_the_command_line_parses_without_importing_torch():
    """`pocketsam --help` stays instant: the parsers (and the defaults they read from
    TrainConfig and pocketsam.thresholds) import no torch."""
    code = ("import sys, pocketsam.cli; pocketsam.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_resume_without_a_checkpoint_says_so_or_refuses(tmp_path, capsys):
    """`train --resume` on a folder with nothing to resume (#24 item 7): an empty or new
    folder starts a new run and says so; a run killed before its first checkpoint starts
    again without mixing in its metrics; a finished model without a checkpoint is not
    silently trained over."""
    data = tmp_path / "scenes"
    assert main(["data", "synth", "--out", str(data), "--num-images", "4", "--size", "64,64", "--quiet"]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    assert main(_quick(data, empty, "--resume")) == 0
    assert f"--resume: '{empty}' holds no run to resume; starting a new run at step 0" in capsys.readouterr().out

    killed = tmp_path / "killed"  # stopped before its first checkpoint: only metrics rows
    killed.mkdir()
    (killed / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "loss": 8.0}\n')
    assert main(_quick(data, killed, "--resume")) == 0
    assert "stopped before its first checkpoint" in capsys.readouterr().out
    assert _loss_steps(killed) == [1, 2]
    assert 9.0 not in [json.loads(ln).get("loss") for ln in (killed / "metrics.jsonl").read_text().splitlines()]

    finished = tmp_path / "finished"  # a finished run whose checkpoint_last.pt was removed
    finished.mkdir()
    (finished / "model.safetensors").write_bytes(b"the user's trained model")
    assert main(_quick(data, finished, "--resume")) == 2
    err = capsys.readouterr().err
    assert "holds model.safetensors but no checkpoint_last.pt to resume from" in err and err.count("\n") == 1
    assert (finished / "model.safetensors").read_bytes() == b"the user's trained model"
