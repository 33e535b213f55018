"""`pocketsam distill` end to end on a few generated scenes: cache, both stages, resume
after SIGKILL, torchrun, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pocketsam import build_sam
from pocketsam.checkpoints import save_checkpoint
from pocketsam.cli import main
from pocketsam.models import MODEL_CONFIGS, create_model

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    torch.manual_seed(0)
    teacher = root / "teacher.safetensors"
    save_checkpoint(create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)), teacher)
    data = root / "scenes"
    assert main(["data", "synth", "--out", str(data), "--num-images", "8", "--size", "64,64", "--seed", "3", "--quiet"]) == 0
    return root, teacher, data


def _args(setup, out, *extra):
    root, teacher, data = setup
    return ["distill", "train", "--teacher", str(teacher), "--data", str(data), "--student", "pocketsam_nano",
            "--img-size", "64", "--cache", str(root / "cache"), "--out", str(out), "--batch-size", "2",
            "--masks-per-image", "2", "--workers", "0", "--val-images", "2", "--log-every", "1", "--warmup", "1", *extra]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_encoder_stage_lowers_the_embedding_error_and_exports_a_loadable_model(setup, tmp_path, capsys):
    root, teacher, data = setup
    assert main(["distill", "cache", "--teacher", str(teacher), "--data", str(data), "--cache", str(root / "cache")]) == 0
    assert "cached 8 new teacher embedding(s)" in capsys.readouterr().out
    out = tmp_path / "enc"
    assert main(_args(setup, out, "--steps", "12", "--lr", "3e-3", "--eval-every", "1")) == 0
    val = [r["val_embed_mse"] for r in _rows(out) if "val_embed_mse" in r]
    assert val[-1] < 0.8 * val[0], val
    model = build_sam(checkpoint=out / "model.safetensors")  # nothing else needed
    assert model.img_size == 64 and model.config.encoder.neck_kernel_size == 1
    # decoupled distillation keeps the teacher's decoder exactly
    t = build_sam(checkpoint=teacher)
    for k, v in t.mask_decoder.state_dict().items():
        assert torch.equal(model.mask_decoder.state_dict()[k], v), k


def test_full_stage_on_unlabeled_images_says_it_uses_teacher_prompts(setup, tmp_path, capsys):
    root, teacher, data = setup
    plain = tmp_path / "plain"
    plain.mkdir()
    for jpg in sorted(data.glob("*.jpg"))[:6]:
        (plain / jpg.name).write_bytes(jpg.read_bytes())
    args = _args(setup, tmp_path / "full", "--steps", "2", "--stage", "full", "--rounds", "2")
    args[args.index("--data") + 1] = str(plain)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "100% of the images have no masks" in out and "random points" in out
    rows = _rows(tmp_path / "full")
    assert all(r["prompts"] == 4 for r in rows if "prompts" in r)  # 2 images x 2 random points


def test_full_stage_keeps_the_teachers_decoder_unless_told_to_train_it(setup, tmp_path, capsys):
    root, teacher, data = setup
    t = build_sam(checkpoint=teacher)
    out = tmp_path / "kept"
    assert main(_args(setup, out, "--steps", "3", "--stage", "full", "--rounds", "2", "--lr", "1e-2")) == 0
    model = build_sam(checkpoint=out / "model.safetensors")
    for part in ("prompt_encoder", "mask_decoder"):
        for k, v in getattr(t, part).state_dict().items():
            assert torch.equal(getattr(model, part).state_dict()[k], v), (part, k)
    saved = _saved_settings(out)
    assert (saved["freeze"], saved["step.train_decoder"]) == (["mask_decoder", "prompt_encoder"], False)
    # --train-decoder: the decoder trains too, as in TinySAM's paper
    trained = tmp_path / "trained"
    assert main(_args(setup, trained, "--steps", "3", "--stage", "full", "--rounds", "2", "--lr", "1e-2",
                      "--train-decoder", "--save-every", "1")) == 0
    free = build_sam(checkpoint=trained / "model.safetensors")
    assert any(not torch.equal(free.mask_decoder.state_dict()[k], v) for k, v in t.mask_decoder.state_dict().items())
    # a run saved before the option existed trained its decoder in stage full: resumed without
    # the flag, it goes on as it began
    state = torch.load(trained / "checkpoint_last.pt", weights_only=True)
    config = json.loads(state["config"])
    assert (config.pop("step.train_decoder"), config["freeze"]) == (True, [])
    state["config"] = json.dumps(config)
    torch.save(state, trained / "checkpoint_last.pt")
    assert main(_args(setup, trained, "--steps", "4", "--stage", "full", "--rounds", "2", "--lr", "1e-2", "--resume")) == 0
    assert _saved_settings(trained)["step.train_decoder"] is True
    # stage encoder never trains it
    capsys.readouterr()
    assert main(_args(setup, tmp_path / "enc", "--steps", "1", "--train-decoder")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage encoder keeps the teacher's prompt encoder and decoder" in err[0]


def _saved_settings(out: Path) -> dict:
    return json.loads(torch.load(out / "checkpoint_last.pt", map_location="cpu", weights_only=True)["config"])


@pytest.mark.parametrize("stage", ["encoder", "full"])
def test_each_stage_trains_with_its_own_defaults_unless_told_otherwise(setup, tmp_path, stage):
    from pocketsam.cli.distill import STAGE_DEFAULTS

    steps = 4
    args = _args(setup, tmp_path / "d", "--steps", str(steps), "--stage", stage, "--rounds", "1")
    i = args.index("--warmup")
    del args[i:i + 2]  # the stage's warm-up too
    cache = tmp_path / "cache"
    args[args.index("--cache") + 1] = str(cache)
    assert main(args) == 0
    d = STAGE_DEFAULTS[stage]
    saved = _saved_settings(tmp_path / "d")
    warmup = round(d["warmup"] * steps) if d["warmup"] < 1 else d["warmup"]
    assert (saved["lr"], saved["weight_decay"], saved["warmup_steps"], saved["min_lr_ratio"], saved["adam_beta2"],
            saved["step.views"], saved["step.detail"]) == (d["lr"], d["weight_decay"], warmup, d["min_lr_ratio"],
                                                           d["adam_beta2"], d["views"], d["detail_weight"])
    # the cache it filled holds the views it trains on: one row per view of each of the 8 images
    (manifest,) = cache.glob("*/manifest.json")
    assert sum(shard["rows"] for shard in json.loads(manifest.read_text())["shards"]) == 8 * d["views"]

    # given values win; a warm-up below 1 is a share of --steps
    args += ["--lr", "1e-3", "--weight-decay", "0.2", "--warmup", "0.5", "--min-lr-ratio", "0.5", "--adam-beta2", "0.9",
             "--views", "4", "--detail-weight", "0.5", "--distance", "l1"]
    args[args.index("--out") + 1] = str(tmp_path / "given")
    assert main(args) == 0
    saved = _saved_settings(tmp_path / "given")
    assert (saved["lr"], saved["weight_decay"], saved["warmup_steps"], saved["min_lr_ratio"], saved["adam_beta2"],
            saved["step.views"], saved["step.detail"], saved["step.distance"]) == (1e-3, 0.2, 2, 0.5, 0.9, 4, 0.5, "l1")
    lrs = [r["lr"] for r in _rows(tmp_path / "given") if "lr" in r]
    assert lrs[1] == pytest.approx(1e-3)  # the peak, right after the 2-step warm-up
    assert lrs[-1] == pytest.approx(1e-3 * 0.5)  # the cosine ends at --min-lr-ratio


def test_a_warmup_share_is_of_the_steps_the_run_started_with(setup, tmp_path):
    args = _args(setup, tmp_path / "r", "--steps", "2", "--warmup", "0.5", "--save-every", "1")
    assert main(args) == 0
    assert _saved_settings(tmp_path / "r")["warmup_steps"] == 1
    # resumed with more steps: the warm-up stays 1 step (the engine refuses a changed one), the cosine stretches
    args[args.index("--steps") + 1] = "4"
    assert main([*args, "--resume"]) == 0
    saved = _saved_settings(tmp_path / "r")
    assert (saved["warmup_steps"], saved["steps"]) == (1, 4)


def test_a_run_saved_before_views_and_detail_existed_resumes_in_todays_terms(setup, tmp_path, capsys):
    """Before `--views`, a run saved `flip` (on: 2 views, off: 1); before `--detail-weight`
    and `--distance`, nothing (0, l2). Such a run resumes under the same settings and is refused under others,
    today's defaults included."""
    out = tmp_path / "old"
    old = ["--save-every", "1", "--flip", "--detail-weight", "0"]  # the flag then: still read, as 2 views
    assert main(_args(setup, out, "--steps", "2", *old)) == 0
    state = torch.load(out / "checkpoint_last.pt", weights_only=True)
    saved = json.loads(state["config"])
    assert (saved.pop("step.views"), saved.pop("step.detail"), saved.pop("step.distance")) == (2, 0.0, "l2")
    state["config"] = json.dumps({**saved, "step.flip": True})
    torch.save(state, out / "checkpoint_last.pt")
    assert main(_args(setup, out, "--steps", "3", "--resume", *old)) == 0
    assert main(_args(setup, out, "--steps", "4", "--resume", "--save-every", "1", "--views", "1")) == 2
    assert "step.views: 2 -> 1" in capsys.readouterr().err


def test_bad_inputs_give_one_line_errors(setup, tmp_path, capsys):
    root, teacher, data = setup
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["distill", "cache", "--teacher", str(junk), "--data", str(data), "--cache", str(tmp_path / "c")], "cannot use teacher"),
        (["distill", "cache", "--teacher", str(teacher), "--data", str(empty), "--cache", str(tmp_path / "c")], "no images in"),
        (_args(setup, tmp_path / "o", "--student", "nope_arch"), "neither a registered architecture nor a checkpoint"),
        (_args(setup, tmp_path / "o", "--lr", "nan"), "must be a finite number"),
        (_args(setup, tmp_path / "o", "--min-lr-ratio", "2"), "--min-lr-ratio must be between 0 and 1"),
        (_args(setup, tmp_path / "o", "--warmup", "-1"), "--warmup must be >= 0"),
        (_args(setup, tmp_path / "o", "--views", "3"), "--views must be one of 1, 2, 4, 8"),
        (_args(setup, tmp_path / "o", "--detail-weight", "-1"), "detail weight must be a finite number >= 0"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_corrupt_cache_shard_is_rebuilt_when_training_resumes(setup, tmp_path, capsys):
    root, teacher, data = setup
    cache = tmp_path / "cache"
    assert main(["distill", "cache", "--teacher", str(teacher), "--data", str(data), "--cache", str(cache)]) == 0
    (shard,) = cache.glob("*/shard_00000.npy")
    shard.write_bytes(shard.read_bytes()[:-7])
    args = _args(setup, tmp_path / "r", "--steps", "1")
    args[args.index("--cache") + 1] = str(cache)
    with pytest.warns(UserWarning, match="damaged or missing"):
        assert main(args) == 0
    assert len(list(cache.glob("*/shard_*.npy"))) == 1  # the damaged shard was replaced


@pytest.mark.slow
def test_killed_distillation_resumes_to_the_same_result(setup, tmp_path):
    steps = 16
    base = [sys.executable, "-m", "pocketsam"]
    full = tmp_path / "full"
    subprocess.run(base + _args(setup, full, "--steps", str(steps), "--stage", "full", "--save-every", "2"),
                   check=True, env=ENV, capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(base + _args(setup, run, "--steps", str(steps), "--stage", "full", "--save-every", "2"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoint_last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (run / "model.pth").exists(), "the run should have been killed mid-way"
    # forgetting --resume never restarts a run silently
    again = subprocess.run(base + _args(setup, run, "--steps", str(steps), "--stage", "full", "--save-every", "2"),
                           env=ENV, capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    subprocess.run(base + _args(setup, run, "--steps", str(steps), "--stage", "full", "--save-every", "2", "--resume"),
                   check=True, env=ENV, capture_output=True)
    a = torch.load(full / "model.pth", weights_only=True)
    b = torch.load(run / "model.pth", weights_only=True)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    steps_logged = [r["step"] for r in _rows(run) if "loss" in r]
    assert steps_logged == list(range(1, steps + 1))  # rows past the checkpoint were dropped on resume


@pytest.mark.slow
def test_torchrun_two_processes_distill_in_step(setup, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29519",
           "-m", "pocketsam", *_args(setup, out, "--steps", "3", "--stage", "full")]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _rows(out)
    assert rows[-1]["ranks_in_sync"] is True
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert build_sam(checkpoint=out / "model.safetensors").img_size == 64
