"""pocketsam's encoder paths against its peers, ONNX Runtime and OpenVINO, in one process.

    python bench/peers.py [--checkpoint CKPT] [--photos DIR] [--threads 2] [--repeats 5]
        [--no-int8] [--profile] [--output result.json]

One model (default: the golden ``../shared/golden/vit_t_random.pt``, MobileSAM architecture,
1024² input; ``--checkpoint`` e.g. the bundled model: pass ``bundled``), the photos of
``--photos`` (default ``../shared/photos``). Every peer runs pocketsam's own SAM-format
``encoder.onnx`` (``pocketsam.runtime.onnx.export_encoder``).

* **Encoder**: median (and min–max) of ``--repeats`` runs per path, all paths timed
  alternately in this process (run r uses photo r mod 3), ``--threads`` threads for every
  runtime. Paths: pocketsam ``default`` / ``bf16`` / ``int8`` (torch oneDNN) / ``fast``;
  ONNX Runtime fp32 and int8 (pocketsam's quantize artifact, QDQ); OpenVINO f32, bf16 and
  NNCF int8 (rest f32 and rest bf16). Both int8 are calibrated on the same photos.
* **Quality**: single-click mask IoU vs float32 (``default``) on a 3×3 grid of clicks per
  photo (3 masks each), every path's embedding decoded by pocketsam's own decoder; mean and
  the worst photo.
* **Decoder**: one point, low-res masks: pocketsam's decoder (``default``) vs the same
  decoder exported to ONNX (``_DecoderCore``: prompt tokens in, masks out) in ONNX Runtime
  and OpenVINO f32; the prompt encoder is pocketsam's in every row.
* **Reference**: a 4096³ fp32 and bf16 ``torch.matmul`` (GEMM peak of these threads).
* ``--profile``: torch.profiler on pocketsam ``bf16`` (top operators by self time) and
  OpenVINO's per-layer counters for bf16 and int8 (time by layer type and kernel, and the
  runtime graph: which layers run in which precision).

Prints a markdown table headed by the CPU name and flags; ``--output`` writes all numbers
as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"

from profile_encoder import profile_table  # noqa: E402  (bench/, this script's folder)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def gemm_peak(threads: int) -> dict:
    """GFLOP/s of a 4096³ matmul in fp32 and bf16 (best of 3) on ``threads`` threads."""
    n = 4096
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        torch.matmul(a, b)
        best = min(_timed(lambda: torch.matmul(a, b)) for _ in range(3))
        out[name] = 2 * n ** 3 / best / 1e9
    return out


CLOCK = time.perf_counter


def _timed(fn) -> float:
    t = CLOCK()
    fn()
    return CLOCK() - t


class OVDecoder:
    """The exported decoder core (``_DecoderCore``) compiled by OpenVINO: the same
    ``predict_masks`` call as pocketsam's MaskDecoder, for the one-point latency row."""

    def __init__(self, path, threads, precision="f32"):
        import openvino as ov

        core = ov.Core()
        self.request = core.compile_model(core.read_model(str(path)), "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}).create_infer_request()

    def predict_masks(self, image_embeddings, image_pe, sparse, dense):
        res = self.request.infer({"image_embeddings": image_embeddings.numpy(), "image_pe": image_pe.numpy(),
                                  "sparse": sparse.numpy(), "dense": dense.numpy()})
        return torch.from_numpy(np.array(res[0])), torch.from_numpy(np.array(res[1]))


def decoder_latency(predictors: dict, image, repeats: int) -> dict:
    """ms per one-point ``predict_low_res`` (median of ``repeats`` means of 5 calls)."""
    h, w = image.shape[:2]
    point = torch.tensor([[[w * 0.4, h * 0.55]]], dtype=torch.float)
    times = defaultdict(list)
    with torch.inference_mode():
        for p in predictors.values():
            pts = (p.transform.apply_coords_torch(point, p.original_size), torch.ones(1, 1, dtype=torch.int))
            p.predict_low_res(pts, None, None, True)
        for _ in range(repeats):
            for name, p in predictors.items():
                pts = (p.transform.apply_coords_torch(point, p.original_size), torch.ones(1, 1, dtype=torch.int))
                t = CLOCK()
                for _ in range(5):
                    p.predict_low_res(pts, None, None, True)
                times[name].append((CLOCK() - t) / 5 * 1000)
    return {n: statistics.median(v) for n, v in times.items()}


def profile_openvino(model_or_path, precision: str, threads: int, x) -> dict:
    """Per-layer counters of one inference: ms by layer type and by kernel (exec_type), and
    the runtime graph's layer count by (type, runtime precision)."""
    from pocketsam.runtime.openvino import compile_encoder

    compiled = compile_encoder(model_or_path, precision, threads, {"PERF_COUNT": True})
    req = compiled.create_infer_request()
    req.infer({0: x.numpy()})
    req.infer({0: x.numpy()})
    by_type, by_kernel = Counter(), Counter()
    for info in req.get_profiling_info():
        ms = info.real_time.total_seconds() * 1000
        by_type[info.node_type] += ms
        by_kernel[info.exec_type] += ms
    layers = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        layer = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
        prec = rt["runtimePrecision"].astype(str) if "runtimePrecision" in rt else "?"
        layers[f"{layer}:{prec}"] += 1
    return {"ms_by_type": dict(by_type.most_common(12)), "ms_by_kernel": dict(by_kernel.most_common(12)),
            "total_ms": sum(by_type.values()), "runtime_layers": dict(layers.most_common(30))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(SHARED / "golden" / "vit_t_random.pt"),
                    help="float checkpoint ('bundled': pocketsam's bundled model)")
    ap.add_argument("--photos", default=str(SHARED / "photos"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-int8", action="store_true", help="skip both int8 quantisations (the slowest part)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="encoder time: wall clock, or this process's CPU time (on a shared, oversubscribed "
                         "machine, CPU time at --threads 1 is what is left of the signal)")
    ap.add_argument("--work", help="keep the exports and both int8 artifacts here and reuse them when present "
                                   "(default: a temporary folder, removed at the end)")
    ap.add_argument("--bf16-cast-once", action="store_true",
                    help="add the experimental row of docs/speed-peers.md: default's fused copy cast to bf16 once")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--output")
    args = ap.parse_args()

    import onnxruntime
    import openvino

    from pocketsam import build_sam
    from pocketsam.io import list_images, load_image
    from pocketsam.predictor import SamPredictor
    from pocketsam.preprocess import Preprocess
    from pocketsam.quant.openvino import quantize_encoder
    from pocketsam.runtime import openvino as pov
    from pocketsam.runtime.agreement import embedding_ious
    from pocketsam.runtime.onnx import export_onnx
    from pocketsam.runtime import configure_threads, optimize
    from pocketsam.platform import cpu_name, relevant_flags

    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    threads = configure_threads(args.threads)
    start = time.perf_counter()
    cpu0 = time.process_time()
    model = build_sam(checkpoint=None if args.checkpoint == "bundled" else args.checkpoint)
    paths = list_images(args.photos)
    images = [load_image(p) for p in paths]
    header = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_name(),
        "flags": relevant_flags(), "threads": threads, "load": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__,
        "checkpoint": args.checkpoint, "img_size": model.img_size, "photos": [p.name for p in paths],
        "clock": args.clock, "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    log(f"{header['cpu']}; {' '.join(header['flags'])}; {threads} threads")
    peak = gemm_peak(threads)
    log(f"GEMM 4096³: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="pocketsam-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    encoders: dict[str, torch.nn.Module] = {}
    notes: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = model
        if not args.no_int8:
            from pocketsam.quant import is_artifact, quantize_model
            from pocketsam.runtime.load import load_int8_model

            if not is_artifact(work / "int8"):
                log("pocketsam quantize (int8 artifact, calibrated on the photos)")
                t = time.perf_counter()
                quantize_model(model, images, work / "int8", measure=len(images), threads=threads)
                notes["quantize_s"] = f"{time.perf_counter() - t:.0f}"
            source = load_int8_model(work / "int8")  # same weights, with the artifact attached
        for mode in ("default", "bf16"):
            encoders[f"pocketsam {mode}"] = optimize(source, mode).image_encoder
        if not args.no_int8:
            encoders["pocketsam int8 (torch oneDNN)"] = optimize(source, "int8", backend="torch").image_encoder
        if args.bf16_cast_once:
            encoders["pocketsam bf16 cast once (experiment)"] = bf16_cast_once(model)
        fast = optimize(source, "fast", cache_dir=work / "cache")
        notes["fast"] = fast.info.speed.chosen_by.describe()
        encoders["pocketsam fast"] = fast.image_encoder
        onnx_model = optimize(model, "onnx", cache_dir=work / "onnx")
        enc_onnx, dec_onnx = export_onnx(model, work / "onnx")  # the files that onnx mode runs (cached)
        encoders["ONNX Runtime fp32"] = onnx_model.image_encoder
        if not args.no_int8:
            encoders["ONNX Runtime int8 (pocketsam QDQ)"] = optimize(source, "int8", backend="onnxruntime").image_encoder
        encoders["OpenVINO f32"] = pov.OpenVINOImageEncoder.from_onnx(enc_onnx, model.img_size, "f32", threads)
        if pov.native_bf16():
            encoders["OpenVINO bf16"] = pov.OpenVINOImageEncoder.from_onnx(enc_onnx, model.img_size, "bf16", threads)
        ov_art = None
        if not args.no_int8:
            if (work / "ov_int8" / pov.META_NAME).is_file():
                ov_art = pov.load_artifact(work / "ov_int8")
            else:
                log("NNCF int8 (transformer preset, calibrated on the photos)")
                t = time.perf_counter()
                # NNCF draws progress bars on stdout: keep stdout for the markdown result
                with contextlib.redirect_stdout(sys.stderr):
                    ov_art = quantize_encoder(model, images, work / "ov_int8", onnx_path=enc_onnx,
                                                  threads=threads, measure=0, image_names=[p.name for p in paths])
                notes["nncf_s"] = f"{time.perf_counter() - t:.0f}"
            encoders["OpenVINO NNCF int8 (rest f32)"] = pov.compile_artifact(ov_art, "f32", threads)
            if pov.native_bf16():
                encoders["OpenVINO NNCF int8 (rest bf16)"] = pov.compile_artifact(ov_art, "bf16", threads)

    # quality: every path's embedding of every photo, decoded by pocketsam's decoder
    log("quality: 3×3 clicks per photo, every path")
    ref = SamPredictor(model, mode="default")
    xs, iou = [], defaultdict(list)
    with torch.inference_mode():
        for image in images:
            ref.set_image(image)
            fp32 = ref.features
            x = Preprocess.for_model(model).image(image)
            xs.append(x)
            for name, enc in encoders.items():
                got = embedding_ious(ref.engine, fp32, enc(x).float(), image.shape[:2], points_only=True)
                iou[name].append(float(np.mean(got["point"])))

    log(f"encoder timing: {args.repeats} alternating rounds over {len(encoders)} paths")
    times = defaultdict(list)
    with torch.inference_mode():
        for r in range(args.repeats):
            x = xs[r % len(xs)]
            for name, enc in encoders.items():
                times[name].append(1000 * _timed(lambda: enc(x)))

    log("decoder latency, one point")
    from pocketsam.runtime.onnx import OrtMaskDecoder

    dec_preds = {"pocketsam decoder (default)": ref}
    for label, make in (("ONNX Runtime decoder fp32", lambda: OrtMaskDecoder(dec_onnx, False, threads)),
                        ("OpenVINO decoder f32", lambda: _ov_mask_decoder(dec_onnx, threads, "f32"))):
        p = SamPredictor(model, mode="default")
        p.set_image(images[0])
        p.engine.mask_decoder = make()  # the predictor's cached engine: only its decoder differs
        dec_preds[label] = p
    ref.set_image(images[0])
    dec = decoder_latency(dec_preds, images[0], max(args.repeats, 5))

    base = statistics.median(times["pocketsam fast"])
    rows = []
    for name in encoders:
        med = statistics.median(times[name])
        rows.append({"path": name, "ms_median": med, "ms_min": min(times[name]), "ms_max": max(times[name]),
                     "fast_over_path": med / base, "iou_mean": float(np.mean(iou[name])),
                     "iou_worst_photo": float(min(iou[name]))})
    result = {"header": header, "gemm_gflops": peak, "encoder": rows, "decoder_ms": dec, "notes": notes}

    if args.profile:
        log("profiles: torch.profiler on pocketsam bf16; OpenVINO per-layer counters")
        result["profile_pocketsam_bf16"] = profile_table(model, "bf16", xs[0], calls=1, rows=15)
        result["profile_openvino"] = {}
        if pov.native_bf16():
            result["profile_openvino"]["bf16"] = profile_openvino(enc_onnx, "bf16", threads, xs[0])
        result["profile_openvino"]["f32"] = profile_openvino(enc_onnx, "f32", threads, xs[0])
        if ov_art is not None:
            result["profile_openvino"]["int8 (rest bf16)"] = profile_openvino(
                ov_art.read_model(), "bf16" if pov.native_bf16() else "f32", threads, xs[0])
    result["seconds"] = {"wall": round(time.perf_counter() - start), "cpu": round(time.process_time() - cpu0)}
    print(markdown(result))
    if args.profile:
        print("\n## pocketsam bf16, torch.profiler (one encoder pass)\n\n" + result["profile_pocketsam_bf16"])
        for k, v in result["profile_openvino"].items():
            print(f"\n## OpenVINO {k}: {v['total_ms']:.0f} ms in per-layer counters\n")
            print("by layer type (ms): " + ", ".join(f"{t} {ms:.0f}" for t, ms in v["ms_by_type"].items()))
            print("\nby kernel (ms): " + ", ".join(f"{t} {ms:.0f}" for t, ms in v["ms_by_kernel"].items()))
            print("\nruntime graph layers (type:precision count): "
                  + ", ".join(f"{t} {n}" for t, n in v["runtime_layers"].items()))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))
    if not args.work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


def bf16_cast_once(model) -> torch.nn.Module:
    """Experiment (docs/speed-peers.md): ``default``'s inference copy (BatchNorm folded,
    channels-last, GELU fused as oneDNN post-ops) cast to bfloat16 once, instead of autocast.
    The fused modules only take float32 in pocketsam today, so this process lets them take
    bf16 too (same oneDNN ops; autocast still disables them)."""
    import copy

    from pocketsam.runtime import fuse, optimize

    def fast_ok(x, w):
        return (fuse.MKLDNN_FUSION and x.device.type == "cpu" and x.dtype == w.dtype
                and x.dtype in (torch.float32, torch.bfloat16)
                and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
                and not torch.is_autocast_enabled("cpu"))

    fuse._fast_ok = fast_ok
    enc = copy.deepcopy(optimize(model, "default").image_encoder).to(torch.bfloat16)

    class CastOnce(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = enc

        def forward(self, x):
            return self.enc(x.to(torch.bfloat16)).float()

    return CastOnce()


def _ov_mask_decoder(path, threads, precision):
    """pocketsam's MaskDecoder interface (output selection) around the OpenVINO decoder core."""
    from pocketsam.models.mask_decoder import MaskDecoder

    class OVMaskDecoder(torch.nn.Module):
        forward = MaskDecoder.forward
        multimask_only = False

        def __init__(self):
            super().__init__()
            self.core = OVDecoder(path, threads, precision)

        def predict_masks(self, *args):
            return self.core.predict_masks(*args)

    return OVMaskDecoder()


def markdown(r: dict) -> str:
    h = r["header"]
    lines = [
        f"{h['date']} · {h['cpu']} · flags {' '.join(h['flags'])} · {h['threads']} threads · load {h['load']}",
        f"torch {h['torch']}, onnxruntime {h['onnxruntime']}, openvino {h['openvino']} · "
        f"{Path(h['checkpoint']).name} at {h['img_size']}² · photos {', '.join(h['photos'])}",
        f"GEMM 4096³ (torch.matmul, same process): fp32 {r['gemm_gflops']['fp32']:.0f} GFLOP/s, "
        f"bf16 {r['gemm_gflops']['bf16']:.0f} GFLOP/s",
        f"`{h['command']}`",
        "",
        f"| encoder | {'CPU ' if r['header'].get('clock') == 'cpu' else ''}ms median (min–max) | pocketsam fast ÷ path | click mask IoU vs fp32: mean (worst photo) |",
        "|---|---|---|---|",
    ]
    for row in r["encoder"]:
        lines.append(f"| {row['path']} | {row['ms_median']:.0f} ({row['ms_min']:.0f}–{row['ms_max']:.0f}) | "
                     f"{row['fast_over_path']:.2f} | {row['iou_mean']:.4f} ({row['iou_worst_photo']:.4f}) |")
    lines += ["", "| decoder, one point (low-res masks) | ms median |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in r["decoder_ms"].items()]
    n = r["notes"]
    lines += ["", f"fast chose: {n.get('fast')}",
              f"quantisation time: pocketsam {n.get('quantize_s', '–')} s, NNCF {n.get('nncf_s', '–')} s; "
              f"bench wall {r['seconds']['wall']} s, CPU {r['seconds']['cpu']} s"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
