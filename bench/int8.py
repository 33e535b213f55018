"""Quality and speed of the int8 artifact (``pocketsam quantize``) against float32.

    python bench/int8.py --artifact OUT [--checkpoint FLOAT_CKPT] [--images A.jpg B.jpg ...]
        [--data SA1B_DIR [--max-images N]] [--threads 2] [--repeats 7] [--modes default,int8,bf16,fast]

Quality (the float model is OUT's own ``model.safetensors`` unless ``--checkpoint`` is given):

* ``--images``: mean mask IoU of int8 against the float32 model's own masks on the bench
  prompt set (a 3×3 point grid, three boxes, one point+box; 3 masks each), by prompt kind;
* ``--data`` (SA-1B layout, e.g. ``pocketsam data synth``): ``pocketsam eval prompts``'
  protocol (one click at the pixel farthest from the boundary, best of 3; the tight box):
  mIoU against the float32 model's masks and against the ground truth, for both models.

Speed: image encoder (one input at the model's size) and decoder (one point, low-res
masks) per mode, all modes timed alternately in this process (best and median of
``--repeats``), as ratios to ``default``. ``fast`` reports which path it chose. The CPU
flags that decide int8/bf16 are printed with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def quality_images(fp32, art, paths):
    from pocketsam.io import load_image
    from pocketsam.quant import measure_quality

    images = [load_image(p) for p in paths]
    return measure_quality(fp32, art, images)


def quality_data(fp32, int8, data, max_images):
    from pocketsam.data.sa1b import SA1BReader
    from pocketsam.eval.runners import eval_prompts

    samples = SA1BReader(data)
    out = {}
    for prompt in ("point", "box"):
        q = eval_prompts(int8, samples, prompt, max_images=max_images, progress=False, teacher=fp32)
        f = eval_prompts(fp32, samples, prompt, max_images=max_images, progress=False)
        out[prompt] = {"miou_vs_fp32": q["miou_vs_teacher"], "miou_gt_int8": q["miou"], "miou_gt_fp32": f["miou"],
                       "masks": q["num_masks"], "images": q["num_images"]}
    return out


def speed(model, modes, repeats, image):
    from pocketsam.predictor import SamPredictor

    preds = {}
    for mode in modes:  # "int8:onnxruntime" / "int8:torch" pick the int8 backend
        name, _, backend = mode.partition(":")
        p = SamPredictor(model, mode=name, **({"backend": backend} if backend else {}))
        p.set_image(image)
        preds[mode] = p
    h, w = image.shape[:2]
    point = torch.tensor([[[w * 0.4, h * 0.55]]], dtype=torch.float)
    enc = {m: [] for m in modes}
    dec = {m: [] for m in modes}
    with torch.inference_mode():
        xs = {}
        for m, p in preds.items():
            x = p.transform.apply_image(image)
            xs[m] = p.engine.preprocess(torch.as_tensor(np.array(x)).permute(2, 0, 1)[None].float())
            p.engine.image_encoder(xs[m])
        for _ in range(repeats):
            for m, p in preds.items():
                t = time.perf_counter()
                p.engine.image_encoder(xs[m])
                enc[m].append(time.perf_counter() - t)
            for m, p in preds.items():
                pts = (p.transform.apply_coords_torch(point, p.original_size), torch.ones(1, 1, dtype=torch.int))
                t = time.perf_counter()
                for _ in range(5):
                    p.predict_low_res(pts, None, None, True)
                dec[m].append((time.perf_counter() - t) / 5)
    paths = {m: p.speed_path for m, p in preds.items()}
    rows = {}
    for m in modes:
        rows[m] = {"encoder_ms_min": 1000 * min(enc[m]), "encoder_ms_median": 1000 * float(np.median(enc[m])),
                   "decoder_ms_min": 1000 * min(dec[m]), "decoder_ms_median": 1000 * float(np.median(dec[m])),
                   "encoder_speedup": min(enc["default"]) / min(enc[m]),
                   "encoder_speedup_median": float(np.median(enc["default"]) / np.median(enc[m])),
                   "decoder_speedup": min(dec["default"]) / min(dec[m]), "path": paths[m]}
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", required=True, help="int8 artifact folder (pocketsam quantize --out)")
    ap.add_argument("--checkpoint", help="float checkpoint (default: the artifact's own model.safetensors)")
    ap.add_argument("--images", nargs="*", default=[], help="images for the prompt-set quality and the timing")
    ap.add_argument("--data", help="SA-1B-layout folder for eval-prompts quality")
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--modes", default="default,int8,bf16,fast")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--output", help="write the results as JSON")
    args = ap.parse_args()

    from pocketsam import build_sam
    from pocketsam.platform import cpu_name, relevant_flags
    from pocketsam.runtime import configure_threads

    threads = configure_threads(args.threads)
    int8 = build_sam(checkpoint=args.artifact)
    fp32 = build_sam(checkpoint=args.checkpoint or int8.info.int8.weights_path)
    header = (f"# {cpu_name()}; flags {' '.join(relevant_flags())}; threads {threads}; "
              f"load {tuple(round(x, 2) for x in os.getloadavg())}; torch {torch.__version__}")
    print(header)
    result: dict = {"header": header, "artifact": str(args.artifact)}
    if args.images:
        q = quality_images(fp32, int8.info.int8, args.images)
        result["images"] = q
        print(f"prompt set on {len(args.images)} image(s): mask IoU vs float32 points {q['mask_iou_point']:.4f}, "
              f"boxes {q['mask_iou_box']:.4f}, point+box {q['mask_iou_point+box']:.4f}; "
              f"embedding rel. L2 {q['embedding_rel_l2']:.4f}")
    if args.data:
        q = quality_data(fp32, int8, args.data, args.max_images)
        result["data"] = q
        for prompt, r in q.items():
            print(f"{prompt:5s} ({r['masks']} masks, {r['images']} images): mIoU vs float32 {r['miou_vs_fp32']:.4f}; "
                  f"vs ground truth int8 {r['miou_gt_int8']:.4f}, float32 {r['miou_gt_fp32']:.4f}")
    if not args.no_speed:
        from pocketsam.benchmark import synthetic_image
        from pocketsam.io import load_image

        image = load_image(args.images[0]) if args.images else synthetic_image(768, 1024)
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        rows = speed(int8, modes, args.repeats, image)
        result["speed"] = rows
        for m, r in rows.items():
            print(f"{m:8s} encoder {r['encoder_ms_min']:7.0f} ms (median {r['encoder_ms_median']:7.0f}) "
                  f"x{r['encoder_speedup']:.2f} (median x{r['encoder_speedup_median']:.2f}); decoder "
                  f"{r['decoder_ms_min']:6.1f} ms x{r['decoder_speedup']:.2f}; {r['path']}")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
