"""Profile the image encoder of one speed mode: top operators by self CPU time.

    python bench/encoder.py --checkpoint CKPT [--mode default] [--threads 2] [--rows 25]

Runs one warm-up and one profiled forward pass on a 1×3×S×S input (S = the model's input
size) and prints torch.profiler's table, grouped by operator and input shape.
"""

from __future__ import annotations

import argparse
import time

import torch

from pocketsam import build_sam
from pocketsam.runtime import configure_threads, optimize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--model-type")
    ap.add_argument("--mode", default="default")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--by-shape", action="store_true", help="group rows by input shapes too")
    args = ap.parse_args()

    threads = configure_threads(args.threads)
    model = build_sam(args.model_type, args.checkpoint)
    encoder = optimize(model, args.mode).image_encoder
    x = torch.randn(1, 3, model.img_size, model.img_size)
    with torch.inference_mode():
        encoder(x)
        start = time.perf_counter()
        encoder(x)
        print(f"mode {args.mode}, {threads} threads: {1000 * (time.perf_counter() - start):.0f} ms unprofiled")
        with torch.profiler.profile(record_shapes=args.by_shape) as prof:
            encoder(x)
    table = prof.key_averages(group_by_input_shape=args.by_shape)
    print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=45))


if __name__ == "__main__":
    main()
