"""Decoupled-distillation learning curve (issue 26): `pocketsam distill train --stage encoder`
against a plain 30-line loop, at several step budgets, one command, resumable.

    python bench/distill_curve.py --out out/distill_curve                          # default and plain at 400 and 1,200 steps
    python bench/distill_curve.py --out out/distill_curve --steps 400 --arms v1 lr  # other arms (see ARMS)
    python bench/distill_curve.py --out out/distill_curve --report                  # the table of what has run

Setup (the issue's): teacher = the bundled model (`pocketsam_tiny`, 256²), student = the
same preset from scratch, 200 synthetic training scenes (seed 1), batch 8, 1 thread;
score = `pocketsam eval prompts --prompt box --against TEACHER` on held-out scenes
(seed 7, never trained on). Every budget is its own run (each schedule ends at its
budget), not a checkpoint of a longer one.

Arms: ``default`` is whatever `--stage encoder` defaults to now; ``plain`` is the loop in
:func:`plain_loop` (AdamW lr 2e-3, torch's OneCycleLR, weight decay 0.01, random
horizontal flips whose targets are the teacher run on the flipped image, embedding MSE,
fp32 targets computed here, no clipping, all 200 images); the others are the previous
defaults (``v1``) and one-factor changes of them, for finding what makes the difference, and
one-factor changes of the plain loop (``plain_*``: learning rate, more views per image).
``engine_plain`` spells out the plain loop's settings on the engine, the default until the
lr sweep set 6e-3; ``lr6e3`` spells out that default, until AdamW's beta2 0.99 replaced
0.999, and the ``lr6e3_*`` arms are the one-factor changes of it that chose the next;
``b2099`` spells out that next default, until 8 views and the detail weight 1 joined it,
and the ``b2099_*`` arms are its one-factor changes (docs/training.md, "Distillation
defaults: the learning curve", "What moves agreement at 1,200 steps", "AdamW's beta2" and
"More views and the error's fine part" has the measured tables and what they say).
Each finished run records the settings it was made with (its arm's flags or options, the
flags every arm shares, the CLI's stage defaults, the teacher's file hash); it is reused and
reported as its arm only while those are unchanged, so a run of an older default is refused
and listed as "(other settings)", never shown as today's.
CPU time is user + system of each training run (teacher embeddings excluded for every arm:
the CLI arms share one cache, the plain loop computes its own once).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

# The settings `--stage encoder` had before issue 26 (engine defaults), spelled out.
V1 = ["--lr", "4e-4", "--weight-decay", "0.05", "--warmup", "100", "--min-lr-ratio", "0.05", "--adam-beta2", "0.999",
      "--val-images", "16", "--no-flip", "--detail-weight", "0"]
# The plain loop's settings on the engine: the encoder stage's default from issue 26 until lr 6e-3 replaced 2e-3.
ENGINE_PLAIN = [*V1, "--lr", "2e-3", "--weight-decay", "0.01", "--warmup", "0.3", "--min-lr-ratio", "0", "--flip"]
# The encoder stage's default from the lr sweep until AdamW's beta2 0.99 replaced 0.999.
LR6E3 = [*ENGINE_PLAIN, "--lr", "6e-3"]
# The encoder stage's default with beta2 0.99, until 8 views and the detail weight 1 joined it.
B2099 = [*LR6E3, "--adam-beta2", "0.99"]


def full_after(lr: str, *extra: str) -> list[str]:
    """Stage full's flags from lr6e3_1200's student (2 rounds, 20 warm-up steps, cosine to 5 %, wd 0.05)."""
    return ["--stage", "full", "--student", "{runs}/lr6e3_1200/model.safetensors", "--rounds", "2",
            "--lr", lr, "--warmup", "20", "--min-lr-ratio", "0.05", "--weight-decay", "0.05", *extra]


ARMS = {
    "default": ("pocketsam distill train --stage encoder, current defaults", []),
    "v1": ("previous defaults (lr 4e-4, warm-up 100 + cosine to 5 %, wd 0.05, no flips, 16 images held out)", V1),
    "lr": ("v1 with lr 2e-3", [*V1, "--lr", "2e-3"]),
    "flip": ("v1 with flips", [*V1, "--flip"]),
    "lr_flip": ("v1 with lr 2e-3 and flips", [*V1, "--lr", "2e-3", "--flip"]),
    "engine_plain": ("the plain loop's settings on the engine (lr 2e-3, 30 % warm-up, cosine to 0, wd 0.01, flips; "
                     "16 images still held out for validation)",
                     ENGINE_PLAIN),
    "engine_plain_noflip": ("engine_plain without flips", [*V1, "--lr", "2e-3", "--weight-decay", "0.01", "--warmup", "0.3",
                                                         "--min-lr-ratio", "0", "--no-flip"]),
    "size512": ("engine_plain (the lr-2e-3 default) with the student's input at 512² (the teacher stays at its own "
                "256²; the student's 32² embedding is area-averaged onto the teacher's 16² grid for the loss)",
                [*ENGINE_PLAIN, "--img-size", "512"]),
    **{f"default_seed{i}": (f"today's defaults, seed {i} (run-to-run noise)", ["--seed", str(i)]) for i in range(1, 5)},
    "default_views4": ("today's defaults with 4 views (the mirrors, no quarter turns): half the cache", ["--views", "4"]),
    "default_views4_seed3": ("default_views4, seed 3", ["--views", "4", "--seed", "3"]),
    "default_l1": ("today's defaults with the mean absolute error (--distance l1, TinySAM's paper) instead of the mean "
                   "squared", ["--distance", "l1"]),
    **{f"default_l1_seed{i}": (f"default_l1, seed {i}", ["--distance", "l1", "--seed", str(i)]) for i in range(1, 5)},
    "b2099": ("the beta2-0.99 default (lr6e3 with AdamW beta2 0.99), before 8 views and the detail weight", B2099),
    **{f"b2099_seed{i}": (f"b2099, seed {i}", [*B2099, "--seed", str(i)]) for i in range(1, 5)},
    "b2099_lr4e3": ("b2099 at lr 4e-3 (does beta2 0.99 move the best lr?)", [*B2099, "--lr", "4e-3"]),
    "b2099_wd005": ("b2099 with weight decay 0.05 instead of 0.01", [*B2099, "--weight-decay", "0.05"]),
    "b2099_wd01": ("b2099 with weight decay 0.1 instead of 0.01", [*B2099, "--weight-decay", "0.1"]),
    "b2099_detail1": ("b2099 with --detail-weight 1", [*B2099, "--detail-weight", "1"]),
    "b2099_detail1_seed3": ("b2099_detail1, seed 3", [*B2099, "--detail-weight", "1", "--seed", "3"]),
    "b2099_views8": ("b2099 with --views 8 (mirrors and quarter turns)", [*B2099, "--views", "8"]),
    "b2099_views8_seed3": ("b2099_views8, seed 3", [*B2099, "--views", "8", "--seed", "3"]),
    "lr6e3": ("the lr-6e-3 default (engine_plain at lr 6e-3, AdamW beta2 0.999), before beta2 0.99", LR6E3),
    "lr6e3_seed1": ("lr6e3, another seed", [*LR6E3, "--seed", "1"]),
    "lr6e3_seed2": ("lr6e3, a third seed", [*LR6E3, "--seed", "2"]),
    "lr6e3_seed3": ("lr6e3, a fourth seed", [*LR6E3, "--seed", "3"]),
    "lr6e3_lr1e2": ("lr6e3 at lr 1e-2 (the top of the plain loop's plateau)", [*LR6E3, "--lr", "1e-2"]),
    "lr6e3_val0": ("lr6e3 training on all 200 images (none held out for the engine's validation)",
                   [*LR6E3, "--val-images", "0"]),
    "lr6e3_warm01": ("lr6e3 with 10 % warm-up instead of 30 %", [*LR6E3, "--warmup", "0.1"]),
    "lr6e3_warm05": ("lr6e3 with 50 % warm-up instead of 30 %", [*LR6E3, "--warmup", "0.5"]),
    "lr6e3_b2_095": ("lr6e3 with AdamW beta2 0.95 instead of 0.999", [*LR6E3, "--adam-beta2", "0.95"]),
    "lr6e3_b2_099_warm05": ("lr6e3 with AdamW beta2 0.99 and 50 % warm-up", [*LR6E3, "--adam-beta2", "0.99", "--warmup", "0.5"]),
    "lr6e3_b2_099_warm05_seed1": ("lr6e3_b2_099_warm05, another seed",
                                  [*LR6E3, "--adam-beta2", "0.99", "--warmup", "0.5", "--seed", "1"]),
    "full_after": ("stage full (lr 1e-3, 20 warm-up steps, 2 rounds) started from lr6e3_1200's student, its prompt "
                   "encoder and decoder trained too", full_after("1e-3", "--train-decoder")),
    "full_after_frozen": ("full_after with the teacher's prompt encoder and decoder kept (today's default)",
                          full_after("1e-3")),
    "full_after_lr1e4": ("full_after (decoder trained) at lr 1e-4 instead of 1e-3", full_after("1e-4", "--train-decoder")),
    "plain": ("plain 30-line loop (bench/distill_curve.py: plain_loop)", {}),
    "plain_lr3e3": ("the plain loop at lr 3e-3", {"lr": 3e-3}),
    "plain_lr4e3": ("the plain loop at lr 4e-3", {"lr": 4e-3}),
    "plain_lr6e3": ("the plain loop at lr 6e-3", {"lr": 6e-3}),
    "plain_lr1e2": ("the plain loop at lr 1e-2", {"lr": 1e-2}),
    "plain_vflip": ("the plain loop with vertical mirrors too (4 views per image)", {"vflip": True}),
    "plain_crops3": ("the plain loop with 3 zoom crops (1.25-2x) of every image as extra images", {"crops": 3}),
    "plain_lr6e3_d8": ("the plain loop at lr 6e-3 with all 8 mirrors and quarter turns", {"lr": 6e-3, "d8": True}),
    "plain_lr6e3_jitter3": ("the plain loop at lr 6e-3 with 3 colour-jittered copies of every image as extra images",
                            {"lr": 6e-3, "jitter": 3}),
}
#: Arms that start from another arm's student: that run is made first, and its settings are part of theirs.
STARTS_FROM = {arm: ("lr6e3", 1200) for arm in ARMS if arm.startswith("full_after")}
COMMON = ["--student", "pocketsam_tiny", "--batch-size", "8", "--workers", "0", "--threads", "1", "--seed", "0",
          "--log-every", "50", "--save-every", "200", "--resume"]


def pocketsam(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "pocketsam", *args], check=True, env=env)


@functools.cache
def teacher_sha256() -> str:
    from pocketsam.io import sha256_file

    return sha256_file(teacher_path())


def teacher_path() -> str:
    from pocketsam.checkpoints import default_checkpoint

    return str(default_checkpoint())


def settings(arm: str) -> dict:
    """What a run of ``arm`` is made with: the teacher's file, the arm's flags or plain-loop
    options, and for CLI arms the flags every arm shares and the stage defaults the CLI
    applies. A finished run is reused and reported as ``arm`` only while these are equal."""
    from pocketsam.cli.distill import STAGE_DEFAULTS

    spec = ARMS[arm][1]
    s = {"teacher_sha256": teacher_sha256()}
    if isinstance(spec, dict):
        s["plain_loop"] = spec
    else:
        s.update(flags=spec, common=COMMON, stage_defaults=STAGE_DEFAULTS)
    if arm in STARTS_FROM:
        s["starts_from"] = settings(STARTS_FROM[arm][0])
    return json.loads(json.dumps(s))  # as read back from cpu.json


def made_with(run: Path) -> dict | None:
    """The settings a finished run recorded (None: none recorded)."""
    record = run / "cpu.json"
    return json.loads(record.read_text()).get("settings") if record.exists() else None


def prepare(out: Path, held_out: int) -> None:
    if not (out / "train").exists():
        pocketsam("data", "synth", "--out", str(out / "train"), "--num-images", "200", "--size", "256,256", "--seed", "1",
                  "--workers", "1", "--quiet")
    if not (out / "held").exists():
        pocketsam("data", "synth", "--out", str(out / "held"), "--num-images", str(held_out), "--size", "256,256",
                  "--seed", "7", "--workers", "1", "--quiet")
    have = len(list((out / "held").glob("*.jpg")))
    if have != held_out:  # every row of one table is scored on the same scenes
        sys.exit(f"error: {out / 'held'} holds {have} held-out scenes, not --held-out {held_out}; pass --held-out {have} "
                 "or another --out")


def zoom_crops(out: Path, per_image: int, zoom: tuple[float, float] = (1.25, 2.0)) -> list[Path]:
    """``per_image`` seeded zoom crops of every training image (a window 1/s of each side,
    s uniform in ``zoom``, at a random place), written once as files: more distinct
    teacher targets from the same 200 images (the ``plain_crops3`` arm)."""
    import numpy as np
    from PIL import Image

    folder = out / f"crops{per_image}_{zoom[0]}_{zoom[1]}"
    if not folder.exists():
        tmp = folder.with_suffix(".tmp")
        tmp.mkdir(exist_ok=True)
        rng = np.random.default_rng(123)
        for path in sorted((out / "train").glob("*.jpg")):
            im = Image.open(path).convert("RGB")
            w, h = im.size
            for j in range(per_image):
                s = rng.uniform(*zoom)
                cw, ch = int(round(w / s)), int(round(h / s))
                x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
                im.crop((x0, y0, x0 + cw, y0 + ch)).save(tmp / f"{path.stem}_{j}.png")
        tmp.rename(folder)
    return sorted(folder.glob("*.png"))


def plain_loop(out: Path, steps: int, name: str = "plain", lr: float = 2e-3, wd: float = 0.01, batch: int = 8,
               seed: int = 0, vflip: bool = False, crops: int = 0, d8: bool = False, jitter: int = 0) -> float:
    """The plain decoupled loop the defaults are measured against (~30 lines), and its
    one-factor variants: ``lr``; ``vflip`` (vertical and both-way mirrors as well, 4 views
    per image); ``d8`` (all 8 mirrors and quarter turns of the square scenes); ``crops``
    (that many zoom crops per image as extra images); ``jitter`` (that many seeded
    colour-jittered copies per image as extra images: contrast, brightness and per-channel
    gain, geometry untouched). Saves the student in ``runs/<name>_<steps>`` and returns the
    training's CPU seconds."""
    import torch
    import torch.nn.functional as F

    from pocketsam import build_sam
    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.models import create_model
    from pocketsam.train.embeddings import collect_images, frame_images, view_content
    from pocketsam.train.step import encode_images

    # the image's first 2, 4 or 8 views: itself, its mirrors, then their quarter turns
    views = [lambda x, s, v=v: view_content(x, s, v)[0] for v in range(8 if d8 else 4 if vflip else 2)]
    teacher = build_sam().eval()
    paths = [im.path for im in collect_images([out / "train"])] + (zoom_crops(out, crops) if crops else [])
    items = list(frame_images(paths, teacher.img_size))
    if jitter:
        rng = torch.Generator().manual_seed(321)
        extra = []
        for it in items:
            h, w = (int(v) for v in it["size"])
            for _ in range(jitter):
                u = torch.rand(5, generator=rng)
                img = it["image"].clone()
                region = img[:, :h, :w]
                mean = region.mean()
                gain = 0.8 + 0.4 * u[2:5, None, None]  # per channel
                region = (region - mean) * (0.6 + 0.8 * u[0]) + mean + (u[1] - 0.5) * 60
                img[:, :h, :w] = (region * gain).clamp(0, 255)
                extra.append({**it, "image": img})
        items += extra
    size = torch.stack([it["size"] for it in items])
    x = torch.stack([torch.stack([v(it["image"], it["size"]) for v in views]) for it in items])  # (N, V, 3, S, S)
    # the teacher's fp32 embeddings of every image in every view, made once per teacher
    targets = out / f"plain_targets_{teacher_sha256()[:12]}_v{len(views)}_c{crops}{f'_j{jitter}' if jitter else ''}.pt"
    if not targets.exists():
        with torch.no_grad():
            t = torch.stack([torch.cat([encode_images(teacher, x[i:i + 8, f], size[i:i + 8]) for i in range(0, len(x), 8)])
                             for f in range(len(views))], 1)
        torch.save(t, targets)
    t = torch.load(targets)
    torch.manual_seed(seed)
    student = create_model("pocketsam_tiny")
    student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
    student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    opt = torch.optim.AdamW(student.image_encoder.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    cpu = time.process_time()
    student.train()
    for step in range(steps):
        idx = torch.randint(len(x), (batch,))
        view = torch.randint(len(views), (batch,))
        err = F.mse_loss(encode_images(student, x[idx, view], size[idx]), t[idx, view])
        opt.zero_grad()
        err.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"{name} {step}/{steps} loss {err.item():.4f}", flush=True)
    student.eval()
    save_checkpoint(student, out / "runs" / f"{name}_{steps}" / "model.safetensors")
    return time.process_time() - cpu


def train(out: Path, arm: str, steps: int) -> None:
    run = out / "runs" / f"{arm}_{steps}"
    want = settings(arm)
    if (run / "model.safetensors").exists() and (run / "cpu.json").exists():
        if made_with(run) == want:
            return
        sys.exit(f"error: {run} was made with other settings than arm '{arm}' has now (e.g. an older default); "
                 "rename it after what it was, or pass another --out")
    if arm in STARTS_FROM:
        train(out, *STARTS_FROM[arm])
    if isinstance(ARMS[arm][1], dict):
        import torch

        torch.set_num_threads(1)
        record = {"cpu_s": plain_loop(out, steps, arm, **ARMS[arm][1])}
    else:
        # a resumed run's CPU is this process's alone: the record says from which step it counts
        from_step = saved_step(run)
        record = {"cpu_s": train_cli(out, arm, steps, run), **({"from_step": from_step} if from_step else {})}
    (run / "cpu.json").write_text(json.dumps({**record, "settings": want}))


def saved_step(run: Path) -> int:
    """The step of the run's last checkpoint (0: none)."""
    import torch

    path = run / "checkpoint_last.pt"
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"]) if path.exists() else 0


def train_cli(out: Path, arm: str, steps: int, run: Path) -> float:
    """``arm`` through `pocketsam distill train`; returns the training's CPU seconds."""
    flags = ARMS[arm][1]
    views = []  # the views the run trains on, the last one given (none: the default, as training's)
    for i, a in enumerate(flags):
        if a in ("--flip", "--no-flip", "--views"):
            views = flags[i:i + 2] if a == "--views" else [a]
    pocketsam("distill", "cache", "--data", str(out / "train"), "--cache", str(out / "cache"), *views, "--threads", "1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # training only: the cache is filled above
    flags = [a.format(runs=out / "runs") for a in ARMS[arm][1]]
    pocketsam("distill", "train", "--stage", "encoder", "--data", str(out / "train"), "--cache", str(out / "cache"),
              "--steps", str(steps), *COMMON, *flags, "--out", str(run))  # an arm's flags win over COMMON's
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def evaluate(out: Path, arm: str, steps: int) -> dict:
    run = out / "runs" / f"{arm}_{steps}"
    result = run / "eval_box.json"
    if not result.exists():
        pocketsam("eval", "prompts", "--data", str(out / "held"), "--prompt", "box", "--checkpoint",
                  str(run / "model.safetensors"), "--against", teacher_path(), "--output", str(result), "--quiet")
    return json.loads(result.read_text())


def report(out: Path) -> None:
    rows = []
    for run in sorted((out / "runs").glob("*_*")):
        if not (run / "eval_box.json").exists():
            continue
        arm, steps = run.name.rsplit("_", 1)
        if arm not in ARMS or made_with(run) != settings(arm):  # never shown as what the arm makes now
            arm += " (other settings)"
        r = json.loads((run / "eval_box.json").read_text())
        record = json.loads((run / "cpu.json").read_text()) if (run / "cpu.json").exists() else {}
        cpu = f"{record['cpu_s'] / 60:.1f}" if record else "nan"
        if record.get("from_step"):  # resumed: this is the CPU of the steps after it
            cpu += f" (steps {record['from_step']:,}–{int(steps):,})"
        rows.append((arm, int(steps), cpu, r))
    print("| arm | steps | train CPU min | box mIoU vs teacher | small / medium / large | box mIoU vs GT |")
    print("|---|---|---|---|---|---|")
    for arm, steps, cpu, r in sorted(rows, key=lambda x: (x[0], x[1])):
        sizes = " / ".join(f"{r.get(f'miou_vs_teacher_{s}', float('nan')):.3f}" for s in ("small", "medium", "large"))
        print(f"| {arm} | {steps} | {cpu} | {r['miou_vs_teacher']:.3f} | {sizes} | {r['miou']:.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, nargs="+", default=[400, 1200])
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=["default", "plain"])
    p.add_argument("--held-out", type=int, default=50, help="held-out scenes (seed 7)")
    p.add_argument("--report", action="store_true", help="only print the table of finished runs")
    args = p.parse_args()
    out = Path(args.out)
    if not args.report:
        prepare(out, args.held_out)
        for steps in args.steps:
            for arm in args.arms:
                t0 = time.time()
                train(out, arm, steps)
                r = evaluate(out, arm, steps)
                print(f"{datetime.now(timezone.utc):%H:%M} {arm} {steps}: box mIoU vs teacher {r['miou_vs_teacher']:.3f} "
                      f"({time.time() - t0:.0f} s)", flush=True)
    report(out)


if __name__ == "__main__":
    main()
