"""Seconds per image of "segment everything" with grid prompts vs the built-in proposal
head (encoder + head + decoder), measured alternately in one process on the same images.

    python bench/proposals_speed.py --data HELD_OUT [--checkpoint C] [--max-images 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pocketsam import build_sam
from pocketsam.data import SA1BReader
from pocketsam.everything import make_generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--max-images", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    sam = build_sam(checkpoint=a.checkpoint)
    gens = {"grid": make_generator("grid", sam), "boxes (proposal head)": make_generator("boxes", sam)}
    samples = SA1BReader(a.data)
    times: dict[str, list[float]] = {k: [] for k in gens}
    prompts: dict[str, list[int]] = {k: [] for k in gens}
    for i in range(min(a.max_images, len(samples))):
        image = samples[i].load_image()
        for name, g in gens.items():  # alternate, so load changes hit both alike
            t = time.perf_counter()
            g.generate(image)
            times[name].append(time.perf_counter() - t)
            prompts[name].append(sum(g.last_stats["prompts"].values()))
    base = statistics.mean(times["grid"])
    for name in gens:
        s = statistics.mean(times[name])
        print(f"{name}: {s:.2f} s/image ({base / s:.1f}x faster than grid), {statistics.mean(prompts[name]):.0f} prompts/image")


if __name__ == "__main__":
    main()
