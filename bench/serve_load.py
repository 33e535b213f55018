"""Load test of `pocketsam serve` on loopback with any checkpoint (the suite runs the same
driver on the bundled model: tests/test_serve_load.py).

    python bench/serve_load.py [--checkpoint C] [--clients 8] [--requests 50] [--threads 2]

N clients each send a fixed number of requests mixing image uploads (6 small images, so
some are cache hits), embedding downloads and server-side decodes of 1-3 random clicks.
Prints errors and p50/p95 latencies per request kind, and the CPU.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{fields['Model name'].strip()}, {fields['CPU(s)'].strip()} CPUs"
    except (OSError, subprocess.CalledProcessError, KeyError):
        return platform.processor() or "unknown CPU"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import tempfile

    from pocketsam import build_sam
    from pocketsam.runtime import configure_threads
    from pocketsam.web.app import Engine, ServeSettings, create_app, loopback_hosts
    from pocketsam.web.loadtest import run_load, serve_in_thread

    configure_threads(args.threads)
    sam = build_sam(checkpoint=args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(sam, ServeSettings(cache_images=8, decoder="server"), onnx_dir=Path(tmp))
        engine.prepare(log=lambda m: None)
        try:
            with serve_in_thread(create_app(engine, allowed_hosts=loopback_hosts())) as (host, port):
                result = run_load(host, port, clients=args.clients, requests=args.requests)
        finally:
            engine.close()
    print(f"model: {args.checkpoint or 'bundled'} (input {sam.img_size}), {args.threads} torch threads, {cpu_name()}")
    print(result.report())
    for error in result.errors[:10]:
        print("error:", error)
    return 1 if result.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
