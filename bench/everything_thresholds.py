"""Choose the "segment everything" thresholds a checkpoint should recommend.

    python bench/everything_thresholds.py --data DIR [--checkpoint C] [--max-images 10]
        [--pairs 0.88,0.95 0.6,0.9 0.5,0.85 0.4,0.8] [--high 8.5 4 2 1]

SAM's defaults (predicted IoU ≥ 0.88, stability ≥ 0.95, confident logit 8.5) suit SAM's
own heads; a small model's IoU head and logits are calibrated lower and can lose every
mask to them. On held-out scenes with exact ground truth (``pocketsam data synth``) this
prints, per (IoU, stability) pair, the grid's AR@100, recall and precision at IoU 0.5 and
their F1; then, at the pair with the best F1, the hierarchical mode for each confident-logit
threshold: how many prompts it saves and what AR it keeps. Record the choice with
``pocketsam export CKPT --out OUT --pred-iou-thresh X --stability-score-thresh Y
--high-score-thresh Z``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def f1(res: dict) -> float:
    p, r = res["precision@50"] or 0.0, res["recall@50@100"] or 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def row(mode: str, piou: float, stab: float, high: float | None, res: dict) -> str:
    high_s = "-" if high is None else f"{high:g}"
    return (f"| {mode} | {piou:g} | {stab:g} | {high_s} | {res['prompts_per_image']:.0f} | {res['proposals_per_image']:.1f} | "
            f"{res['ar@100']:.3f} | {res['recall@50@100']:.3f} | {res['precision@50'] or 0:.3f} | {f1(res):.3f} | "
            f"{res['seconds_per_image']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="SA-1B layout folder of held-out scenes")
    ap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--max-images", type=int, default=10)
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--pairs", nargs="+", default=["0.88,0.95", "0.6,0.9", "0.5,0.85", "0.4,0.8"],
                    help="IoU,stability threshold pairs for the grid")
    ap.add_argument("--high", nargs="+", type=float, default=[8.5, 4.0, 2.0, 1.0],
                    help="hierarchical confident-logit thresholds")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from pocketsam import build_sam
    from pocketsam.data import SA1BReader
    from pocketsam.eval.runners import eval_everything
    from pocketsam.everything import GENERATORS

    sam = build_sam(checkpoint=args.checkpoint)
    samples = SA1BReader(args.data)
    header = ("| mode | pred IoU | stability | confident logit | prompts/img | masks/img | AR@100 | recall@50 | "
              "precision@50 | F1@50 | s/img |\n|---|---|---|---|---|---|---|---|---|---|---|")
    print(header)
    best = None
    with torch.inference_mode():
        for pair in args.pairs:
            piou, stab = (float(v) for v in pair.split(","))
            gen = GENERATORS["grid"](sam, points_per_side=args.points_per_side, pred_iou_thresh=piou,
                                     stability_score_thresh=stab)
            res = eval_everything(gen, samples, max_images=args.max_images, progress=False)
            print(row("grid", piou, stab, None, res), flush=True)
            if best is None or f1(res) > f1(best[2]):
                best = (piou, stab, res)
        piou, stab, _ = best
        for high in args.high:
            gen = GENERATORS["hierarchical"](sam, points_per_side=args.points_per_side, pred_iou_thresh=piou,
                                             stability_score_thresh=stab, high_score_thresh=high)
            res = eval_everything(gen, samples, max_images=args.max_images, progress=False)
            print(row("hierarchical", piou, stab, high, res), flush=True)


if __name__ == "__main__":
    main()
