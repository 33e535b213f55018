"""Where an encoder path spends its time: torch.profiler's top operators for ``default`` and
``bf16`` on one model (docs/speed-peers.md). ``bench/peers.py --profile`` uses
:func:`profile_table` too.

    python bench/profile_encoder.py [--checkpoint bundled] [--threads 1] [--calls 10] [--rows 12]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def profile_table(model, mode: str, x: torch.Tensor, calls: int = 10, rows: int = 12) -> str:
    """Markdown: ``mode``'s image encoder on ``x`` under torch.profiler (after 3 warm-up
    calls), self CPU ms and events per call, and its top ``rows`` operators."""
    from pocketsam.runtime import optimize

    fast = optimize(model, mode)
    with torch.inference_mode():
        for _ in range(3):
            fast.image_encoder(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                fast.image_encoder(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1000 / calls
    count = sum(e.count for e in events) / calls
    lines = [f"{mode}: {total:.1f} ms self CPU per call under the profiler, {count:.0f} operator events per call", "",
             "| operator | ms per call | calls per call |", "|---|---|---|"]
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]:
        lines.append(f"| {e.key} | {e.self_cpu_time_total / 1000 / calls:.2f} | {e.count / calls:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="default: the bundled model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--rows", type=int, default=12)
    ap.add_argument("--modes", default="default,bf16")
    args = ap.parse_args()

    from pocketsam import build_sam
    from pocketsam.platform import cpu_name, relevant_flags

    torch.set_num_threads(args.threads)
    model = build_sam(checkpoint=args.checkpoint)
    print(f"{cpu_name()}; flags {' '.join(relevant_flags())}; {args.threads} thread(s); {args.checkpoint or 'bundled'} "
          f"at {model.img_size}²")
    x = torch.randn(1, 3, model.img_size, model.img_size)
    for mode in args.modes.split(","):
        print("\n" + profile_table(model, mode, x, args.calls, args.rows))


if __name__ == "__main__":
    main()
