"""Benchmark the three "segment everything" modes.

    python bench/everything.py [--image ../shared/photos/street.jpg] [--checkpoint ...]
        [--threads 2] [--points-per-side 32] [--pred-iou-thresh 0.88] [--reference]

Prints one row per mode: prompts decoded, masks (decoded → after iou → after stability →
returned) and seconds per stage. ``--reference`` also times a segment_anything-style
run of the grid mode — the plain model path (no speed rewrites) and the reference
generator's order of work (every decoded mask upsampled to full resolution before
filtering) — for the speed-up column.

The golden checkpoint has random weights: its predicted IoUs are mostly negative, so
with the default 0.88 IoU threshold almost nothing reaches the full-resolution stage.
Pass ``--pred-iou-thresh 0`` (filter off) to time the worst case, where every mask is
upsampled and scored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def tiling_boxes(h: int, w: int, n_side: int = 8) -> np.ndarray:
    """Stand-in object proposals (no detector here): boxes of 3 sizes on an n×n grid."""
    boxes = []
    for frac in (0.15, 0.3, 0.5):
        bw, bh = w * frac, h * frac
        for cy in np.linspace(bh / 2, h - bh / 2, n_side):
            for cx in np.linspace(bw / 2, w - bw / 2, n_side):
                boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    return np.asarray(boxes)


def reference_style_grid(sam, image, points_per_side, pred_iou_thresh, stability_score_thresh) -> tuple[float, int]:
    """Time the reference generator: the plain model path (segment_anything's math, no
    speed rewrites) and its order of work — upsample every mask, then filter."""
    from pocketsam import SamPredictor
    from pocketsam import masks as M

    t0 = time.perf_counter()
    pred = SamPredictor(sam, mode="reference")
    pred.set_image(image)
    pts = M.build_point_grid(points_per_side) * np.array(image.shape[:2])[None, ::-1]
    kept = 0
    for (batch,) in M.batch_iterator(64, pts):
        logits, iou, _ = pred.predict_batch(batch[:, None], np.ones((len(batch), 1), np.int32), return_logits=True)
        logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
        if pred_iou_thresh > 0:
            logits, iou = logits[iou > pred_iou_thresh], iou[iou > pred_iou_thresh]
        st = M.stability_score(logits, sam.mask_threshold, 1.0)
        if stability_score_thresh > 0:
            logits = logits[st >= stability_score_thresh]
        m = logits > sam.mask_threshold
        M.batched_mask_to_box(m)
        kept += len(M.mask_to_rle_uncompressed(m))
    return time.perf_counter() - t0, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=str(ROOT.parent / "shared" / "photos" / "street.jpg"))
    ap.add_argument("--checkpoint", default=str(ROOT.parent / "shared" / "golden" / "vit_t_random.pt"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--pred-iou-thresh", type=float, default=0.88)
    ap.add_argument("--stability-score-thresh", type=float, default=0.95)
    ap.add_argument("--modes", default="grid,hierarchical,boxes")
    ap.add_argument("--reference", action="store_true", help="also time a reference-style grid run")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from pocketsam import ObjectAwareMaskGenerator, SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator, build_sam
    from pocketsam.io import load_image

    image = load_image(args.image)
    sam = build_sam(checkpoint=args.checkpoint)
    h, w = image.shape[:2]
    common = dict(pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh)
    rows = []
    for mode in args.modes.split(","):
        if mode == "grid":
            gen = SamAutomaticMaskGenerator(sam, points_per_side=args.points_per_side, **common)
            recs = gen.generate(image)
        elif mode == "hierarchical":
            gen = SamHierarchicalMaskGenerator(sam, points_per_side=args.points_per_side, **common)
            recs = gen.generate(image)
        else:
            gen = ObjectAwareMaskGenerator(sam, proposals=tiling_boxes(h, w), score_thresh=0.0)
            recs = gen.generate(image)
        st = gen.last_stats
        m = st["masks"]
        rows.append((mode, st["prompts_total"], m.get("decoded", 0), m.get("after_iou", 0), m.get("after_stability", 0), len(recs), st["seconds"]))
    print(f"image {Path(args.image).name} {w}x{h}, threads {args.threads}, points/side {args.points_per_side}, "
          f"iou>{args.pred_iou_thresh}, stability>={args.stability_score_thresh}")
    head = f"{'mode':13s} {'prompts':>7s} {'decoded':>7s} {'iou_ok':>6s} {'stable':>6s} {'masks':>5s} " \
           f"{'embed':>6s} {'decode':>7s} {'filter':>7s} {'post':>6s} {'total':>7s}"
    print(head)
    print("-" * len(head))
    for mode, p, dec, iou_ok, stab, n, s in rows:
        print(f"{mode:13s} {p:7d} {dec:7d} {iou_ok:6d} {stab:6d} {n:5d} {s['embedding']:6.2f} {s['decoding']:7.2f} "
              f"{s['filtering']:7.2f} {s['postprocess']:6.2f} {s['total']:7.2f}")
    if args.reference:
        secs, kept = reference_style_grid(sam, image, args.points_per_side, args.pred_iou_thresh, args.stability_score_thresh)
        grid_total = next((r[6]["total"] for r in rows if r[0] == "grid"), None)
        speed = f", speed-up of grid mode {secs / grid_total:.1f}x" if grid_total else ""
        print(f"reference-style grid: {secs:.2f}s ({kept} masks after filters){speed}")


if __name__ == "__main__":
    main()
