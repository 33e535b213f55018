"""``pocketsam bench``: speed, memory and accuracy of each inference mode, one table.

Every mode runs in its own subprocess; the harness and the columns are described in
:mod:`pocketsam.benchmark`."""

from __future__ import annotations

import argparse
import json

from pocketsam.cli.common import check_output_file

DEFAULT_MODES = "reference,default,bf16,int8,fast,onnx,openvino,compile"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure speed, memory and accuracy of the inference modes",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", "-c", help="model checkpoint (default: the bundled model)")
    p.add_argument("--model-type", help="vit_h/vit_l/vit_b/vit_t/tinysam (default: detect from the checkpoint)")
    p.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated modes (default {DEFAULT_MODES})")
    p.add_argument("--image", action="append", help="image(s) to use (repeatable; default: a synthetic scene)")
    p.add_argument("--threads", type=int, help="torch/ONNX Runtime threads (default: POCKETSAM_THREADS, "
                   "OMP_NUM_THREADS or the available cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed encoder runs per mode (default 3)")
    p.add_argument("--prompt-repeats", type=int, default=10, help="timed single-prompt runs (default 10)")
    p.add_argument("--batch", type=int, default=64, help="prompts in the batched decoder timing (default 64)")
    p.add_argument("--points-per-side", type=int, default=16, help="everything-mode grid (default 16; 0 skips)")
    p.add_argument("--output", "-o", help="write the results as JSON here (atomically)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per mode before giving up (default 1800)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pocketsam.benchmark import BenchSettings, format_table, run_benchmark
    from pocketsam.io import write_text_atomic

    settings = BenchSettings(
        checkpoint=args.checkpoint, model_type=args.model_type,
        modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()), images=args.image or [],
        threads=args.threads, repeats=args.repeats, prompt_repeats=args.prompt_repeats, batch=args.batch,
        points_per_side=args.points_per_side, timeout=args.timeout,
    ).checked()
    if args.output:
        check_output_file(args.output, "--output")  # before the modes run, not after
    results, meta = run_benchmark(settings)
    print(format_table(results, meta, settings.points_per_side, settings.batch))
    if args.output:
        write_text_atomic(json.dumps({"machine": meta, "settings": vars(settings) | {"modes": list(settings.modes)},
                                      "modes": results}, indent=2), args.output)
    failed = [m for m, r in results.items() if r.get("error")]
    return 1 if failed and len(failed) == len(results) else 0
