"""The distillation evidence table (README, "Distillation"): one command, resumable.

    python bench/distill_table.py --out out/distill            # everything: ~5 h (6 rows × ~48 CPU-min, 1 thread each;
                                                               #   --rows abc / --rows def in two shells use both cores)
    python bench/distill_table.py --out out/distill --eval-only # re-measure finished rows

Teacher: the bundled model (pocketsam_tiny, 256²). Student: pocketsam_nano. Data: 3,000
synthetic scenes (seed 1, the teacher's own training set) and 100 held-out scenes (seed 7,
never trained on). Every row gets the same CPU budget (1 thread, steps chosen from its
measured step time so that each trains for ~45-50 CPU-minutes on an AMD EPYC (Zen 3, AVX2);
on the AVX-512/AMX Xeon of 2026-12-05 rows c-e took 34-36; the first version of this table
used 1/3.4 of these steps, ~10 CPU-minutes on a Xeon):

  (a) the student from scratch with `pocketsam train` (the teacher's own recipe)
  (b) decoupled distillation (MobileSAM): `pocketsam distill train --stage encoder`
  (c) full-stage distillation (TinySAM), later points uniformly from the image, no weighting,
      the prompt encoder and decoder trained too (`--train-decoder`, as TinySAM's paper)
  (d) (c) + online hard prompt sampling
  (e) (d) + hard mask weighting
  (f) (d) with the teacher's prompt encoder and mask decoder kept (stage full's default
      now): only the encoder learns, from all three losses

Rows are run as CLI commands with --resume, so a killed run continues. Columns: CPU
minutes (user + sys of the run, from its own resource usage), held-out 1-click and box
mIoU vs ground truth, box mIoU vs the teacher's masks, and the encoder's ms per 256²
image (2 threads, median of 20, teacher and students timed alternately in one process).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

# every full-stage row: 680 steps of 2 prompting rounds, lr 1e-3 after 20 warm-up steps
FULL = ["distill", "train", "--stage", "full", "--steps", "680", "--rounds", "2", "--lr", "1e-3", "--warmup", "20"]
ROWS = {
    "a": ("from scratch (`pocketsam train`)", ["train", "--arch", "pocketsam_nano", "--steps", "1200", "--rounds", "1",
                                              "--lr", "8e-4", "--warmup", "100", "--focal-weight", "1", "--dice-weight", "1"]),
    "b": ("decoupled (stage encoder)", ["distill", "train", "--stage", "encoder", "--steps", "5600", "--lr", "1e-3", "--warmup", "200",
                                         "--weight-decay", "0.05", "--min-lr-ratio", "0.05", "--adam-beta2", "0.999",
                                         "--detail-weight", "0"]),  # as measured (before issue 26's defaults)
    # c-e as measured: the prompt encoder and decoder trained too (stage full's only way then)
    "c": ("full-stage", [*FULL, "--no-hard-prompts", "--no-hard-mask-weighting", "--train-decoder"]),
    "d": ("full-stage + hard prompts", [*FULL, "--no-hard-mask-weighting", "--train-decoder"]),
    "e": ("full-stage + hard prompts + hard mask weighting", [*FULL, "--train-decoder"]),
    "f": ("(d) with the teacher's prompt encoder and decoder kept (stage full's default now)",
          [*FULL, "--no-hard-mask-weighting"]),
}
COMMON = ["--batch-size", "8", "--masks-per-image", "8", "--workers", "0", "--val-images", "0", "--log-every", "50",
          "--save-every", "100", "--threads", "1", "--seed", "0", "--resume"]


def pocketsam(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pocketsam", *args], check=True)


def prepare(out: Path) -> None:
    if not (out / "scenes").exists():
        pocketsam("data", "synth", "--out", str(out / "scenes"), "--num-images", "3000", "--size", "256,256", "--seed", "1", "--quiet")
    if not (out / "held_default").exists():
        pocketsam("data", "synth", "--out", str(out / "held_default"), "--num-images", "100", "--size", "256,256", "--seed", "7", "--quiet")
    pocketsam("distill", "cache", "--data", str(out / "scenes"), "--cache", str(out / "cache"), "--flip", "--threads", "2")


def run_row(out: Path, key: str) -> None:
    """Train row ``key`` (resumable); its CPU time goes to ``cpu_seconds.json``."""
    run = out / f"row_{key}"
    if (run / "model.safetensors").exists():
        return
    args = list(ROWS[key][1])
    if args[0] == "distill":
        args += ["--data", str(out / "scenes"), "--cache", str(out / "cache"), "--flip"]
    else:
        args += ["--data", str(out / "scenes")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pocketsam(*args, *COMMON, "--out", str(run))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    record(out, key, cpu)


def record(out: Path, key: str, cpu_s: float) -> None:
    path = out / "cpu_seconds.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = data.get(key, 0.0) + cpu_s  # a resumed row adds its parts
    path.write_text(json.dumps(data, indent=1))


def encoder_ms(models: dict[str, object], repeats: int = 20) -> dict[str, float]:
    import torch

    from pocketsam.runtime import optimize
    from pocketsam.runtime.select import time_encoders

    torch.set_num_threads(2)
    fast = {k: optimize(m, "default") for k, m in models.items()}
    times = time_encoders(fast, torch.randn(1, 3, 256, 256), repeats)  # alternating: load changes hit all alike
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def evaluate(out: Path, keys: str, max_images: int | None) -> None:
    """Held-out mIoU of the teacher ("t") and rows ``keys``, merged into ``table.json``."""
    import torch

    from pocketsam import build_sam
    from pocketsam.data import SA1BReader
    from pocketsam.eval.runners import eval_prompts

    torch.set_num_threads(1)  # several evaluations may run side by side
    teacher = build_sam()
    held = SA1BReader(out / "held_default")
    cpu = json.loads((out / "cpu_seconds.json").read_text()) if (out / "cpu_seconds.json").exists() else {}
    path = out / "table.json"
    for key in keys:
        model = teacher if key == "t" else build_sam(checkpoint=out / f"row_{key}" / "model.safetensors")
        against = None if key == "t" else teacher
        point = eval_prompts(model, held, prompt="point", max_images=max_images, progress=False, teacher=against)
        box = eval_prompts(model, held, prompt="box", max_images=max_images, progress=False, teacher=against)
        row = {
            "name": "teacher: the bundled pocketsam_tiny" if key == "t" else ROWS[key][0],
            "cpu_min": cpu.get(key, float("nan")) / 60, "masks": box["num_masks"], "point_miou": point["miou"],
            "box_miou": box["miou"], "point_miou_vs_teacher": point.get("miou_vs_teacher", 1.0),
            "box_miou_vs_teacher": box.get("miou_vs_teacher", 1.0),
            **{f"box_vs_teacher_{s}": box.get(f"miou_vs_teacher_{s}", 1.0) for s in ("small", "medium", "large")},
        }
        table = json.loads(path.read_text()) if path.exists() else {}
        table[key] = {**table.get(key, {}), **row}
        path.write_text(json.dumps(table, indent=1))
        print(json.dumps({key: row}), flush=True)


def time_encoders(out: Path) -> None:
    from pocketsam import build_sam

    path = out / "table.json"
    table = json.loads(path.read_text())
    models = {k: build_sam() if k == "t" else build_sam(checkpoint=out / f"row_{k}" / "model.safetensors") for k in table}
    for k, ms in encoder_ms(models).items():
        table[k]["encoder_ms"] = ms
    path.write_text(json.dumps(table, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/distill")
    p.add_argument("--rows", default="abcdef")
    p.add_argument("--eval-only", action="store_true", help="measure finished rows (and the teacher, row t)")
    p.add_argument("--max-images", type=int, default=None, help="held-out scenes to evaluate (default all 100)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if not a.eval_only:
        prepare(out)
        for key in a.rows:
            run_row(out, key)
        a.rows = "t" + a.rows
    evaluate(out, a.rows, a.max_images)
    time_encoders(out)
    table = json.loads((out / "table.json").read_text())
    print("\n| row | CPU min | point mIoU | box mIoU | box mIoU vs teacher | small / medium / large | encoder ms @256² |\n"
          "|---|---|---|---|---|---|---|")
    for r in table.values():
        sizes = " / ".join(f"{r.get(f'box_vs_teacher_{s}', float('nan')):.3f}" for s in ("small", "medium", "large"))
        print(f"| {r['name']} | {r['cpu_min']:.0f} | {r['point_miou']:.3f} | {r['box_miou']:.3f} | "
              f"{r['box_miou_vs_teacher']:.3f} | {sizes} | {r.get('encoder_ms', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
