"""Hierarchical "everything": TinySAM's pass-2 layout vs the regular dense grid.

    python bench/hierarchical_layout.py [--num-images 8] [--styles default,alt] [--seed 7]
        [--size 256] [--points-per-side 32] [--threads 1] [--checkpoint C]

On held-out synthetic scenes (``pocketsam.data.synth``, seed 7 by default; the bundled
model was trained on seed 1), runs three generators with the same thresholds (the
checkpoint's recommendations, SAM's defaults where it has none):

* ``grid``: :class:`SamAutomaticMaskGenerator`, ``points_per_side²`` prompts;
* ``hierarchical, tinysam``: :class:`SamHierarchicalMaskGenerator` (default layout);
* ``hierarchical, grid``: the same with ``dense_layout="grid"``.

Per generator it prints prompts decoded per image and as a fraction of the grid's, AR@100
against the ground truth (``pocketsam.eval.runners.eval_everything``) and its difference
from the grid's, AR@100 of the grid's own masks (how many of the grid's masks a layout
finds again, IoU 0.5:0.95), masks per image and CPU seconds per image. Ends with a
markdown table (per style and pooled) for ``docs/everything.md``. ~14 CPU-seconds per
image at 256², 1 thread (all three generators).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


class Recording:
    """Wraps a generator for ``eval_everything``: keeps each image's records, so the
    layouts can also be scored against the grid's masks."""

    def __init__(self, generator) -> None:
        self.generator = generator
        self.records: list[list[dict]] = []
        self.cpu_seconds = 0.0

    @property
    def last_stats(self):
        return self.generator.last_stats

    def generate(self, image: np.ndarray) -> list[dict]:
        t0 = time.process_time()
        records = self.generator.generate(image)
        self.cpu_seconds += time.process_time() - t0
        self.records.append(records)
        return records


def ar_against(reference: list[list[dict]], records: list[list[dict]], k: int = 100) -> float:
    """AR@k of ``records`` with ``reference``'s masks as the ground truth, pooled over images."""
    from pocketsam.eval.metrics import average_recall, best_iou_per_gt, rle_iou

    best = []
    for ref, mine in zip(reference, records):
        ious = rle_iou([r["segmentation"] for r in ref], [r["segmentation"] for r in mine])
        best.append(best_iou_per_gt(ious, [r["predicted_iou"] for r in mine], k))
    return average_recall(np.concatenate(best)) if best else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--num-images", type=int, default=8, help="scenes per style")
    ap.add_argument("--styles", default="default,alt")
    ap.add_argument("--seed", type=int, default=7, help="synthetic scenes' seed (training used 1)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from pocketsam import SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator
    from pocketsam.data import SA1BReader
    from pocketsam.data.synth import generate_dataset
    from pocketsam.eval.runners import eval_everything, load_model

    sam = load_model(args.checkpoint)
    th = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95, "high_score_thresh": 8.5, **sam.everything_defaults}
    grid_th = {k: v for k, v in th.items() if k != "high_score_thresh"}
    n = args.points_per_side
    rows = {
        "grid": lambda: SamAutomaticMaskGenerator(sam, points_per_side=n, output_mode="coco_rle", **grid_th),
        "hierarchical, tinysam": lambda: SamHierarchicalMaskGenerator(sam, points_per_side=n, output_mode="coco_rle",
                                                                       dense_layout="tinysam", **th),
        "hierarchical, grid": lambda: SamHierarchicalMaskGenerator(sam, points_per_side=n, output_mode="coco_rle",
                                                                    dense_layout="grid", **th),
    }
    styles = [s for s in args.styles.split(",") if s]
    # per generator: one entry per style (AR@100, ground-truth count, prompts / image, masks / image)
    results: dict[str, dict] = {name: {"styles": [], "records": [], "cpu": 0.0} for name in rows}
    t_all = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        for style in styles:
            folder = Path(tmp) / style
            generate_dataset(folder, args.num_images, (args.size, args.size), args.seed, style, workers=1, progress=False)
            samples = SA1BReader(folder)
            for name, make in rows.items():
                gen = Recording(make())
                out = eval_everything(gen, samples, progress=False, desc=name, ks=(100,))
                r = results[name]
                r["styles"].append((out["ar@100"], out["num_gt"], out["prompts_per_image"], out["proposals_per_image"],
                                    gen.cpu_seconds / out["num_images"], len(r["records"]), len(gen.records)))
                r["records"] += gen.records
                r["cpu"] += gen.cpu_seconds
                print(f"{style:8s} {name:22s} AR@100 {out['ar@100']:.4f}  prompts/image {out['prompts_per_image']:.1f}  "
                      f"masks/image {out['proposals_per_image']:.1f}  CPU s/image {gen.cpu_seconds / out['num_images']:.2f}",
                      flush=True)

    def summary(name: str, which: list[int]) -> tuple[float, float, float, float, float]:
        """(AR@100 pooled over the ground-truth masks, prompts / image, masks / image, CPU s /
        image, AR@100 of the grid's masks) over the styles ``which``."""
        st = [results[name]["styles"][i] for i in which]
        gts = sum(x[1] for x in st)
        recs = [r for x in st for r in results[name]["records"][x[5]:x[5] + x[6]]]
        grid = results["grid"]["styles"]
        grid_recs = [r for i in which for r in results["grid"]["records"][grid[i][5]:grid[i][5] + grid[i][6]]]
        return (sum(x[0] * x[1] for x in st) / max(1, gts), float(np.mean([x[2] for x in st])),
                float(np.mean([x[3] for x in st])), float(np.mean([x[4] for x in st])), ar_against(grid_recs, recs))

    print()
    print(f"{args.num_images} held-out synthetic scenes per style ({', '.join(styles)}; seed {args.seed}; "
          f"{args.size}²), {n}×{n} dense grid, thresholds {th}, {args.threads} thread(s), {cpu_name()}, "
          f"{time.strftime('%Y-%m-%d')}; total CPU {time.process_time() - t_all:.0f} s")
    print()
    print("| scenes | generator | prompts / image | of the grid's | AR@100 | vs grid | AR@100 of the grid's masks "
          "| masks / image | CPU s / image |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups = [(s, [i]) for i, s in enumerate(styles)] + ([("all", list(range(len(styles))))] if len(styles) > 1 else [])
    for label, which in groups:
        grid_ar, grid_prompts = summary("grid", which)[:2]
        for name in rows:
            ar, prompts, masks, cpu, vs_grid = summary(name, which)
            print(f"| {label} | {name} | {prompts:.0f} | {prompts / grid_prompts:.0%} | {ar:.3f} | "
                  f"{100 * (ar - grid_ar):+.1f} pt | {vs_grid:.3f} | {masks:.1f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
