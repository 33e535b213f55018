"""Quality of every speed path on a trained model: mask IoU against float32 and mIoU against
the ground truth, with each path's encoder time, in one process (issue 25).

    python bench/fast_paths.py --out out/fast_paths [--checkpoint bundled] [--held N] [--calib N]
        [--threads 1] [--paths default,bf16,int8:torch,int8:onnxruntime,openvino:f32,openvino:bf16,int8:openvino]

Model: the bundled ``pocketsam_tiny`` (trained, 256²) unless ``--checkpoint``. Data, made
once under ``--out`` with ``pocketsam data synth``: ``--calib`` training-distribution scenes
(seed 1) that calibrate both int8 artifacts (pocketsam's, run by torch oneDNN or ONNX
Runtime; NNCF's, run by OpenVINO), and ``--held`` held-out scenes (seed 7) that score every
path with ``pocketsam eval prompts``' protocol (one click at the pixel farthest from the
boundary, best of 3 by predicted IoU; the tight box): mIoU against the ground truth and
against the float32 model's own masks for the same prompts.

Why mask IoU ≥ 0.99 against float32 bounds the loss in mIoU: 1 − IoU (the Jaccard
distance) is a metric on sets, so for a path's mask A, float32's mask B and the ground
truth G, IoU(A, G) ≥ IoU(B, G) − (1 − IoU(A, B)); averaged over masks, a path whose mean
IoU with float32 is ≥ 0.99 loses at most 0.01 mIoU against any ground truth on those
prompts. ``fast`` offers no path below 0.99 (``pocketsam.runtime.select.IOU_FLOOR``); this
bench measures both numbers on held-out scenes the artifacts never saw.

Encoder ms: process CPU time of one encoder call at the model's input size, median of
``--repeats``, every path alternately in this process (``--threads`` threads). ``fast``'s
choice for the float model on this machine is printed too (measured afresh in a temporary
cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

PATHS = "default,bf16,int8:torch,int8:onnxruntime,openvino:f32,openvino:bf16,int8:openvino"


def synth(folder: Path, n: int, seed: int) -> None:
    """Scenes made before anything imports OpenVINO (a child process after it has crashed)."""
    if not folder.exists():
        subprocess.run([sys.executable, "-m", "pocketsam", "data", "synth", "--out", str(folder), "--num-images", str(n),
                        "--size", "256,256", "--seed", str(seed), "--quiet"], check=True)


def build_paths(model, names, calib_images, work: Path, threads: int) -> dict:
    """Every path of ``names`` for ``model``; the int8 artifacts are kept under ``work`` and
    reused only for the same weights and the same number of calibration scenes."""
    from pocketsam.checkpoints import weights_sha256
    from pocketsam.quant import quantize_model, with_artifact
    from pocketsam.quant.openvino import quantize_encoder
    from pocketsam.runtime import optimize
    from pocketsam.runtime.artifact import load_artifact as load_int8
    from pocketsam.runtime.openvino import load_artifact

    models = {}
    arts = {}
    key = f"{weights_sha256(model)[:16]}_calib{len(calib_images)}"  # a changed model or calibration: new artifacts
    for name in names:
        kind, _, variant = name.partition(":")
        if kind == "int8" and variant in ("torch", "onnxruntime"):
            if "pocketsam" not in arts:
                folder = work / f"int8_pocketsam_{key}"
                arts["pocketsam"] = (load_int8(folder) if folder.exists() else
                                     quantize_model(model, calib_images, folder, measure=0, threads=threads))
            models[name] = optimize(with_artifact(model, arts["pocketsam"]), "int8", backend=variant)
        elif name == "int8:openvino":
            folder = work / f"int8_openvino_{key}"
            art = load_artifact(folder) if folder.exists() else quantize_encoder(model, calib_images, folder, measure=0,
                                                                                 threads=threads)
            models[name] = optimize(with_artifact(model, art), "int8")
        elif kind == "openvino":
            models[name] = optimize(model, "openvino", precision=variant, cache_dir=work / "cache")
        else:
            models[name] = optimize(model, kind)
    return models


def encoder_ms(models: dict, size: int, repeats: int) -> dict[str, float]:
    from pocketsam.runtime.select import time_encoders

    times = time_encoders(models, torch.randn(1, 3, size, size), repeats, clock=time.process_time)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/fast_paths")
    ap.add_argument("--checkpoint", default=None, help="float checkpoint (default: the bundled model)")
    ap.add_argument("--held", type=int, default=100, help="held-out scenes (seed 7)")
    ap.add_argument("--calib", type=int, default=32, help="calibration scenes (seed 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--paths", default=PATHS)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calib, held_dir = out / f"calib_{args.calib}", out / f"held_{args.held}"  # another count: other scenes
    synth(calib, args.calib, 1)
    synth(held_dir, args.held, 7)

    from pocketsam import build_sam
    from pocketsam.data import SA1BReader
    from pocketsam.eval.runners import eval_prompts
    from pocketsam.io import write_json_atomic, write_text_atomic
    from pocketsam.platform import cpu_name, relevant_flags
    from pocketsam.quant import calibration_images
    from pocketsam.runtime import configure_threads, optimize

    threads = configure_threads(args.threads)
    model = build_sam(checkpoint=args.checkpoint)
    header = (f"{time.strftime('%Y-%m-%d')}; {cpu_name()}; flags {' '.join(relevant_flags())}; {threads} thread(s); "
              f"model {args.checkpoint or 'bundled'} ({model.img_size}²)")
    print(header, flush=True)
    images, _ = calibration_images(calib, args.calib)
    names = [p.strip() for p in args.paths.split(",") if p.strip()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = build_paths(model, names, images, out, threads)
    reference = models.get("default") or optimize(model, "default")
    held = SA1BReader(held_dir)
    rows: dict[str, dict] = {}
    for name, m in models.items():
        row = {}
        for prompt in ("point", "box"):
            r = eval_prompts(m, held, prompt, progress=False, teacher=None if name == "default" else reference)
            row[prompt] = {"miou": r["miou"], "vs_fp32": r.get("miou_vs_teacher", 1.0), "masks": r["num_masks"]}
        rows[name] = row
        print(json.dumps({name: row}), flush=True)
    ms = encoder_ms(models, model.img_size, args.repeats)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["POCKETSAM_CACHE"] = cache
        fast = optimize(model, "fast")
        chose = f"{fast.info.speed.chosen_by.mode}: {fast.info.speed.chosen_by.reason}"
    base = rows["default"] if "default" in rows else None
    lines = [f"# {header}", f"fast chose {chose}", "",
             "| path | encoder CPU-ms | × default | box mIoU vs fp32 | 1-click mIoU vs fp32 | box mIoU (GT) | "
             "Δ vs fp32 | 1-click mIoU (GT) | Δ vs fp32 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        d_box = r["box"]["miou"] - base["box"]["miou"] if base else float("nan")
        d_pt = r["point"]["miou"] - base["point"]["miou"] if base else float("nan")
        lines.append(f"| {name} | {ms[name]:.1f} | {ms['default'] / ms[name]:.2f} | {r['box']['vs_fp32']:.4f} | "
                     f"{r['point']['vs_fp32']:.4f} | {r['box']['miou']:.4f} | {d_box:+.4f} | {r['point']['miou']:.4f} | "
                     f"{d_pt:+.4f} |")
    n = next(iter(rows.values()))["box"]["masks"]
    lines.append(f"\n{n} masks on {args.held} held-out scenes; calibration: {args.calib} scenes of the training "
                 f"distribution.")
    text = "\n".join(lines)
    print(text)
    write_text_atomic(text + "\n", out / "table.md")
    write_json_atomic({"header": header, "fast": chose, "rows": rows, "encoder_ms": ms}, out / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
