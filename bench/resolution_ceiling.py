"""How good can a SAM-style mask be at a given input size? An upper bound, no model needed.

    python bench/resolution_ceiling.py --data DIR [--max-images 30] [--sizes 256 512 1024]

SAM's decoder predicts logits on a grid a quarter of the input size (64×64 at 256²,
256×256 at 1024²); the mask a user gets is that grid upsampled bilinearly to the input
frame, cropped and resized to the image, thresholded at 0 (``Sam.postprocess_masks``).
Whatever the network learns, its masks are limited by what such a grid can draw.

For every ground-truth mask of the first ``--max-images`` images this fits the best grid
directly: free per-cell logits, started from the area-averaged mask and refined by Adam
on the binary cross-entropy of the upsampled logits against the exact mask. The resulting
IoU is (up to the fit's optimality) the best IoU any model at that input size can reach,
so its mean is a ceiling on ``pocketsam eval prompts`` mIoU. Prints one row per size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def fit_ceiling(gt: torch.Tensor, sam, input_size: tuple[int, int], iters: int = 300) -> torch.Tensor:
    """Best IoU reachable per mask. gt (N, H, W) bool at the image size → (N,) IoU."""
    low = sam.prompt_encoder.mask_input_size  # (img_size/4, img_size/4)
    target = gt.float()
    # start: the mask in the resized input frame, area-averaged onto the grid (padding = background)
    framed = F.interpolate(target[:, None], size=input_size, mode="bilinear", align_corners=False)
    padded = F.pad(framed, (0, sam.img_size - input_size[1], 0, sam.img_size - input_size[0]))
    logits = ((F.interpolate(padded, size=low, mode="area") - 0.5) * 8).requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(iters):
        up = sam.postprocess_masks(logits, input_size, gt.shape[-2:])[:, 0]
        loss = F.binary_cross_entropy_with_logits(up * 4, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = sam.postprocess_masks(logits, input_size, gt.shape[-2:])[:, 0] > 0
        inter = (pred & gt).flatten(1).sum(1).float()
        union = (pred | gt).flatten(1).sum(1).float()
    return inter / union.clamp(min=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="SA-1B-layout folder, e.g. from `pocketsam data synth`")
    ap.add_argument("--max-images", type=int, default=30)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="model input sizes")
    ap.add_argument("--chunk", type=int, default=64, help="masks fitted at once")
    args = ap.parse_args()

    from pocketsam.data.sa1b import SA1BReader
    from pocketsam.eval.runners import AREA_RANGES
    from pocketsam.models import MODEL_CONFIGS, create_model
    from pocketsam.preprocess import ResizeLongestSide

    torch.manual_seed(0)
    samples = SA1BReader(args.data)
    images = []  # per image: its ground-truth masks, K×H×W bool
    for i in range(min(args.max_images, len(samples))):
        masks = samples[i].masks()  # crowd regions left out
        if len(masks):
            images.append(torch.from_numpy(masks).bool())
    areas = torch.cat([m.flatten(1).sum(1) for m in images]).numpy()
    print(f"{len(areas)} masks from {len(images)} images of {args.data}")
    print("| input size | low-res grid | ceiling mIoU | small | medium | large | share ≥ 0.9 |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        sam = create_model(MODEL_CONFIGS["pocketsam_tiny"].with_img_size(size))
        ious = []
        for gt in images:
            input_size = ResizeLongestSide.get_preprocess_shape(*gt.shape[-2:], size)
            for part in gt.split(args.chunk):
                ious.append(fit_ceiling(part, sam, input_size))
        iou = torch.cat(ious).numpy()
        cells = [f"{iou.mean():.3f}"]
        for lo, hi in AREA_RANGES.values():
            sel = (areas >= lo) & (areas < hi)
            cells.append(f"{iou[sel].mean():.3f} ({sel.sum()})" if sel.any() else "-")
        low = sam.prompt_encoder.mask_input_size
        print(f"| {size}² | {low[0]}×{low[1]} | " + " | ".join(cells) + f" | {np.mean(iou >= 0.9):.2f} |")


if __name__ == "__main__":
    main()
