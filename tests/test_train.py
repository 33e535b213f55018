"""Training engine: prompts, losses, exact resume after a kill, torchrun DDP, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pocketsam import build_sam
from pocketsam.train.losses import dice_loss, focal_loss, mask_iou, sam_loss
from pocketsam.masks import batched_mask_to_box
from pocketsam.train.prompts import correction_points, noisy_boxes, sample_from_regions
from pocketsam.train.sampler import ResumableBatchSampler

WORKER = Path(__file__).resolve().parent / "train_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_points_fall_inside_regions_and_boxes_are_tight():
    masks = torch.zeros(3, 20, 30, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 10:20, 0:1] = True
    g = torch.Generator().manual_seed(0)
    xy, ok = sample_from_regions(masks, g)
    assert ok.tolist() == [True, True, False]
    for k in range(2):
        x, y = xy[k].long().tolist()
        assert masks[k, y, x] and xy[k].frac().abs().sum() == 0  # integer pixels, as evaluation clicks
    assert batched_mask_to_box(masks).tolist() == [[3, 2, 8, 4], [0, 10, 0, 19], [0, 0, 0, 0]]
    nb = noisy_boxes(masks[:2], g, noise=0.1, max_noise=2)
    assert (nb - batched_mask_to_box(masks[:2])).abs().max() <= 2 + 1e-6


def test_correction_points_label_by_error_type():
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[:, 2:6, 2:6] = True
    pred = gt.clone()
    pred[0, 2:6, 2:4] = False  # misses: positive click there
    pred[1, 0, 0] = True  # false positive: negative click there
    xy, labels = correction_points(pred, gt, torch.Generator().manual_seed(0), scale=4.0)
    assert labels.squeeze(1).tolist() == [1, 0]
    x0, y0 = (xy[0, 0] / 4).long().tolist()
    assert gt[0, y0, x0] and not pred[0, y0, x0]
    # low-res cell (0, 0) covers input pixels 0..3: the click is 1.5, which the prompt
    # encoder's +0.5 puts at 2.0, the cell's centre
    assert xy[1, 0].tolist() == [1.5, 1.5]
    perfect_xy, perfect_labels = correction_points(gt, gt, None, 4.0)
    assert perfect_labels.squeeze(1).tolist() == [-1, -1]


def test_losses_on_known_cases():
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1
    good = (target * 2 - 1) * 10
    bad = -good
    assert focal_loss(good, target) < 1e-4 < focal_loss(bad, target)
    assert dice_loss(good, target) < 0.01 and dice_loss(bad, target) > 0.9
    assert mask_iou(good, target).item() == 1.0 and mask_iou(bad, target).item() == 0.0
    logits = torch.stack([bad, good, bad], dim=1)  # (1, 3, 4, 4): best is output 1
    loss, parts = sam_loss(logits, torch.tensor([[0.0, 1.0, 0.0]]), target)
    assert parts["best"].tolist() == [1] and loss < 0.01


def test_sampler_is_resumable_and_splits_ranks():
    full = ResumableBatchSampler(10, 3, seed=1)
    it = iter(full)
    first = [next(it) for _ in range(5)]
    resumed = iter(ResumableBatchSampler(10, 3, seed=1, start=3))
    assert [next(resumed) for _ in range(2)] == first[3:]
    r0, r1 = ResumableBatchSampler(10, 2, 1, 0, 2), ResumableBatchSampler(10, 2, 1, 1, 2)
    assert set(i for i, _ in r0.batch(0)).isdisjoint(i for i, _ in r1.batch(0))
    seen = [i for m in range(5) for i, _ in r0.batch(m) + r1.batch(m)]
    assert sorted(seen[:10]) == list(range(10))  # every sample once per epoch


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pth", weights_only=True)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    steps = 14
    subprocess.run([sys.executable, str(WORKER), str(tmp_path / "full"), str(steps)], check=True, env=ENV,
                   capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(run), str(steps)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoint_last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # let it run past the checkpoint: that work is lost and must be redone
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (run / "model.pth").exists(), "the run should have been killed mid-way"
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < killed_at < steps
    out = subprocess.run([sys.executable, str(WORKER), str(run), str(steps), "--resume"], check=True, env=ENV,
                         capture_output=True, text=True)
    assert f"resumed from {ckpt} at step {killed_at}" in out.stdout
    full, resumed = _weights(tmp_path / "full"), _weights(run)
    assert full.keys() == resumed.keys()
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], rtol=0, atol=0, msg=k)


@pytest.mark.slow
def test_torchrun_two_processes_train_in_step(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           str(WORKER), str(out), "4"]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["ranks_in_sync"] is True
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # rank 0 logs alone: once per step
    model = build_sam(checkpoint=out / "model.safetensors")  # exported model loads with no other information
    assert model.img_size == 64


def test_train_step_overfits_one_batch():
    """The whole prompt → decoder → loss → backward path can learn: a tiny model driven by
    SamTrainStep on one fixed batch goes from predicting nothing to clearly segmenting it
    (guards against silent collapse bugs such as targets that vanish at low resolution)."""
    from conftest import tiny_config
    from pocketsam.models import create_model
    from pocketsam.train.step import SamTrainStep
    from pocketsam.train.validate import quick_miou

    torch.manual_seed(0)
    model = create_model(tiny_config(128)).train()
    step = SamTrainStep(model, rounds=1, box_prob=0.5, focal_weight=1.0, dice_weight=1.0)
    masks = torch.zeros(2, 2, 128, 128, dtype=torch.bool)
    masks[0, 0, 20:70, 30:90] = True  # a rectangle
    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    masks[0, 1] = (yy - 95) ** 2 + (xx - 40) ** 2 < 20**2  # a disc
    masks[1, 0, 60:120, 10:50] = True
    masks[1, 1] = (yy - 30) ** 2 + (xx - 90) ** 2 < 25**2
    image = torch.full((2, 3, 128, 128), 60.0)
    colours = torch.tensor([[230.0, 40, 40], [40, 200, 60]])
    for b in range(2):
        for k in range(2):
            image[b][:, masks[b, k]] = colours[k][:, None]
    batch = {"image": image, "size": torch.tensor([[128, 128]] * 2), "masks": masks,
             "valid": torch.ones(2, 2, dtype=torch.bool)}
    model.eval()
    before = quick_miou(model, step, batch)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator()
    losses = []
    for i in range(80):
        g.manual_seed(i)
        loss, _ = step(batch, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    after = quick_miou(model, step, batch)
    # measured: loss 0.96 → 0.49, box mIoU 0.12 → 0.61, point 0.12 → 0.49
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5])
    assert after["val_miou_box"] > 0.45 and after["val_miou_box"] > before["val_miou_box"] + 0.3, (before, after)
    assert after["val_miou_point"] > 0.35, (before, after)


def test_training_validation_evaluation_and_inference_click_the_same_point(tiny_sam):
    """One click convention: integer pixel coordinates, +0.5 added by the prompt encoder."""
    from pocketsam import SamPredictor
    from pocketsam.masks import farthest_point
    from pocketsam.train.validate import interior_points

    s = tiny_sam.img_size
    mask = torch.zeros(1, s, s, dtype=torch.bool)
    mask[0, 7, 5] = True  # one pixel: every protocol must click exactly (5, 7)
    train_xy, _ = sample_from_regions(mask, torch.Generator().manual_seed(0))
    assert train_xy.tolist() == [[5.0, 7.0]]
    assert interior_points(mask).tolist() == [[5.0, 7.0]]
    assert tuple(farthest_point(mask[0].numpy())) == (5, 7)
    labels = torch.ones(1, 1, dtype=torch.long)
    trained, _ = tiny_sam.prompt_encoder((train_xy[:, None], labels), None, None)
    predictor = SamPredictor(tiny_sam, mode="reference")
    predictor.set_image(np.zeros((s, s, 3), np.uint8))  # no resize: the same frame
    coords = predictor.transform.apply_coords(np.array([[5, 7]]), (s, s))
    inferred, _ = tiny_sam.prompt_encoder((torch.as_tensor(coords, dtype=torch.float)[None], labels), None, None)
    torch.testing.assert_close(trained, inferred)
