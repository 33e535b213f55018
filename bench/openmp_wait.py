"""The same "everything" job with OpenMP's default wait policy and with the passive one
pocketsam sets (``pocketsam/__init__.py``), in alternating fresh processes.

    python bench/openmp_wait.py [IMAGE] [--mode boxes] [--rounds 2]

Each round runs ``pocketsam everything IMAGE --mode MODE`` (default: ``boxes`` on
``examples/scene.jpg``; issue 22 measured ``../shared/photos/dog.jpg``) once with
``OMP_WAIT_POLICY`` set empty (libgomp's default: threads spin up to 300,000 times at every
barrier before they sleep) and once unset (pocketsam then sets ``PASSIVE``: they sleep at
once), and prints, per run, the generator's own seconds (``stats.seconds.total``), the
process's wall time and its CPU time (user + system), with the load average. The
difference shows on a machine whose cores are busy with other work; compare CPU times
there, or rounds run back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(image: Path, mode: str, policy: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    env["PYTHONPATH"] = str(REPO / "src")
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pocketsam", "everything", str(image), "--mode", mode, "--quiet",
                        "--out", out, "--force"], env=env, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        doc = json.loads(next(Path(out).glob("*/annotations.json")).read_text())
    return {"masks": len(doc["annotations"]), "generate_s": doc["stats"]["seconds"]["total"], "wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "load": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", nargs="?", default=str(REPO / "examples" / "scene.jpg"))
    p.add_argument("--mode", default="boxes")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    print("| round | OpenMP wait | masks | generate s | process wall s | process CPU s | load |")
    print("|---|---|---|---|---|---|---|")
    for r in range(args.rounds):
        for name, policy in (("default (spin)", ""), ("passive (pocketsam)", None)):
            m = run_once(Path(args.image), args.mode, policy)
            print(f"| {r + 1} | {name} | {m['masks']} | {m['generate_s']:.1f} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} "
                  f"| {m['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
