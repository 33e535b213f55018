"""Regenerate ``docs/everything_modes.png`` (shown in docs/everything.md) and print each mode's numbers.

    python docs/make_figures.py [--checkpoint C] [--threads 2]

Runs the three "segment everything" modes on ``examples/scene.jpg`` with the bundled model
(or ``--checkpoint``) and the thresholds the checkpoint recommends. The boxes mode gets
the scene's ground-truth boxes (``examples/scene.json``) as proposals, standing in for an
object-discovery model. Panels: grid, hierarchical, boxes, side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "everything_modes.png"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from pocketsam import build_sam
    from pocketsam.everything import BoxesProposals, make_generator
    from pocketsam.io import read_json, save_png_atomic
    from pocketsam.viz import overlay_masks

    sam = build_sam(checkpoint=args.checkpoint)
    image = np.asarray(Image.open(ROOT / "examples" / "scene.jpg").convert("RGB"))
    gt = read_json(ROOT / "examples" / "scene.json")["annotations"]
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in gt)], np.float64)
    print(f"thresholds from the checkpoint: {sam.everything_defaults or 'none (SAM defaults)'}")

    panels = []
    with torch.inference_mode():
        for mode in ("grid", "hierarchical", "boxes"):
            gen = make_generator(mode, sam)
            extra = {"proposals": BoxesProposals(boxes, np.ones(len(boxes)))} if mode == "boxes" else {}
            records = gen.generate(image, **extra)
            stats = gen.last_stats
            print(f"{mode}: prompts {stats['prompts']}, {len(records)} masks, seconds {stats.get('seconds')}")
            panel = Image.fromarray(overlay_masks(image, records, alpha=0.5, outlines=True))
            ImageDraw.Draw(panel).text((6, 4), f"{mode}: {len(records)} masks", fill=(255, 255, 255))
            panels.append(panel)
    w, h = panels[0].size
    sheet = Image.new("RGB", (3 * w + 8, h), (255, 255, 255))
    for i, p in enumerate(panels):
        sheet.paste(p, (i * (w + 4), 0))
    save_png_atomic(np.asarray(sheet), Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
