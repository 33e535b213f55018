"""Benchmark the three "segment everything" modes, per photo and speed mode.

    python bench/everything.py [--photos ../shared/photos | --image PHOTO.jpg] [--checkpoint ...]
        [--threads 2] [--points-per-side 32] [--modes grid,hierarchical,boxes]
        [--speeds default,fast] [--pred-iou-thresh 0.88,0 --stability-score-thresh 0.95,0]
        [--peers [--peer-sample-side 16]] [--reference] [--output RESULT.md]

Per photo (every image of ``--photos``, default ``../shared/photos``; ``--image`` runs one),
per speed mode (``--speeds``) and per threshold setting (the comma lists of
``--pred-iou-thresh`` / ``--stability-score-thresh``, paired), each mode runs once and one
markdown row reports: prompts decoded, masks (decoded → after IoU → after stability →
returned), and the process CPU seconds per stage from the generator's
``last_stats["cpu_seconds"]``: encoder (``embedding``), decoder (``decoding``), filtering
(IoU filter, upsampling of the survivors, stability score, boxes, RLE, NMS), post
(records) and total, plus the total wall seconds. CPU time is what a loaded machine does
not inflate; run with ``--threads 1``.

* ``fast`` picks its path from a one-off measurement cached in ``$POCKETSAM_CACHE``; the
  bench points ``POCKETSAM_CACHE`` at a fresh temporary folder, so the choice (shown in the
  "path" column; it may be an OpenVINO path where ``openvino`` is installed) is made anew.
  Each speed's predictor embeds the first photo once before anything is timed.
* Boxes mode: no detector and (for the golden checkpoint) no proposal head, so the
  proposals are stand-ins, ``tiling_boxes`` (3 sizes on an 8×8 grid: 192 boxes). It keeps
  MobileSAMv2's filters (every mask: IoU and stability off) in every threshold setting, so
  it runs once per photo and speed.
* The golden checkpoint has random weights: its predicted IoUs are mostly negative, so
  at SAM's 0.88 almost nothing reaches the full-resolution stage. The second default
  setting, IoU 0 and stability 0 (filters off), is the worst case: every decoded mask is
  upsampled, scored, boxed and run-length encoded.
* ``--peers``: per photo, a grid "everything" as a user of SAM's ONNX export runs it:
  pocketsam's SAM-format ``encoder.onnx`` in ONNX Runtime fp32, OpenVINO f32 and (with
  native bf16) bf16, then the SAM-format ``decoder.onnx`` (``pocketsam.export``, all
  four outputs) in ONNX Runtime, **one call per point** (SAM's decoder export takes one
  prompt per call), its three multimask outputs filtered by pocketsam's own generator
  (the same ``filter_candidates`` / NMS / records). The ONNX Runtime fp32 encoder runs
  inside the generator; the OpenVINO encoders are timed on their own and replace its
  encoder time. Per-point decoding is slow, so only the points on every
  ``points_per_side / --peer-sample-side``-th row and column are decoded and filtered
  (default 16² of 32²), and decoder and filtering CPU seconds are scaled to the full grid
  (the output says so). OpenVINO is loaded only after everything else (it has crashed a
  process that later spawned a subprocess); nothing here spawns one.
* ``--reference`` also times a segment_anything-style run of the grid mode on the first
  photo — the plain model path (no speed rewrites) and the reference generator's order of
  work (every decoded mask upsampled to full resolution before filtering).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"
# fast's one-off measurement and the ONNX exports go to a fresh folder (set before pocketsam
# reads it); an explicit POCKETSAM_CACHE still wins
os.environ.setdefault("POCKETSAM_CACHE", tempfile.mkdtemp(prefix="pocketsam-everything-bench-"))

STAGES = (("encoder", "embedding"), ("decoder", "decoding"), ("filtering", "filtering"), ("post", "postprocess"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tiling_boxes(h: int, w: int, n_side: int = 8) -> np.ndarray:
    """Stand-in object proposals (no detector here): boxes of 3 sizes on an n×n grid."""
    boxes = []
    for frac in (0.15, 0.3, 0.5):
        bw, bh = w * frac, h * frac
        for cy in np.linspace(bh / 2, h - bh / 2, n_side):
            for cx in np.linspace(bw / 2, w - bw / 2, n_side):
                boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    return np.asarray(boxes)


def reference_style_grid(sam, image, points_per_side, pred_iou_thresh, stability_score_thresh) -> tuple[float, int]:
    """Time the reference generator: the plain model path (segment_anything's math, no
    speed rewrites) and its order of work — upsample every mask, then filter."""
    from pocketsam import SamPredictor
    from pocketsam import masks as M

    t0 = time.perf_counter()
    pred = SamPredictor(sam, mode="reference")
    pred.set_image(image)
    pts = M.build_point_grid(points_per_side) * np.array(image.shape[:2])[None, ::-1]
    kept = 0
    for (batch,) in M.batch_iterator(64, pts):
        logits, iou, _ = pred.predict_batch(batch[:, None], np.ones((len(batch), 1), np.int32), return_logits=True)
        logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
        if pred_iou_thresh > 0:
            logits, iou = logits[iou > pred_iou_thresh], iou[iou > pred_iou_thresh]
        st = M.stability_score(logits, sam.mask_threshold, 1.0)
        if stability_score_thresh > 0:
            logits = logits[st >= stability_score_thresh]
        m = logits > sam.mask_threshold
        M.batched_mask_to_box(m)
        kept += len(M.mask_to_rle_uncompressed(m))
    return time.perf_counter() - t0, kept


def settings_of(args) -> list[tuple[float, float]]:
    ious = [float(v) for v in str(args.pred_iou_thresh).split(",")]
    stabs = [float(v) for v in str(args.stability_score_thresh).split(",")]
    if len(ious) != len(stabs):
        raise SystemExit("error: --pred-iou-thresh and --stability-score-thresh need as many values each")
    return list(zip(ious, stabs))


def filters_label(setting: tuple[float, float] | None) -> str:
    if setting is None:
        return "own (all kept)"
    iou, stab = setting
    return "off (worst case)" if iou <= 0 and stab <= 0 else f"IoU>{iou:g}, stab≥{stab:g}"


def short_path(predictor) -> str:
    """The speed path that ran, in a few words (for fast: the path it chose)."""
    speed = predictor.engine.info.speed
    if speed.chosen_by is not None:
        return f"fast → {speed.chosen_by.mode}"
    return speed.mode


def run_generator(gen, image, **kwargs) -> dict:
    """One ``generate`` call; its row: prompts, mask counts and the CPU / wall split."""
    recs = gen.generate(image, **kwargs)
    st = gen.last_stats
    m = st["masks"]
    cpu = st["cpu_seconds"]
    return {
        "prompts": st["prompts_total"], "decoded": m.get("decoded", 0), "after_iou": m.get("after_iou", 0),
        "after_stability": m.get("after_stability", 0), "returned": len(recs),
        "cpu": {name: cpu[key] for name, key in STAGES} | {"total": cpu["total"]}, "wall": st["seconds"]["total"],
    }


def make_generator(mode, predictor, args, setting):
    from pocketsam import ObjectAwareMaskGenerator, SamAutomaticMaskGenerator, SamHierarchicalMaskGenerator

    if mode == "boxes":
        return ObjectAwareMaskGenerator(predictor, score_thresh=0.0)  # MobileSAMv2's filters: every mask kept
    cls = SamAutomaticMaskGenerator if mode == "grid" else SamHierarchicalMaskGenerator
    iou, stab = setting
    return cls(predictor, points_per_side=args.points_per_side, pred_iou_thresh=iou, stability_score_thresh=stab)


def pocketsam_rows(sam, images, args, settings) -> tuple[list[dict], dict]:
    from pocketsam import SamPredictor

    rows, paths = [], {}
    modes = args.modes.split(",")
    for speed in args.speeds.split(","):
        predictor = SamPredictor(sam, mode=speed)
        log(f"{speed}: building the inference path (fast measures its candidates once)")
        c = time.process_time()
        with torch.inference_mode():
            predictor.set_image(images[0][1])  # warm-up; fast's one-off measurement happens here
        predictor.reset_image()
        paths[speed] = {"short": short_path(predictor), "full": predictor.speed_path,
                        "setup_cpu_s": time.process_time() - c}
        log(f"{speed}: {paths[speed]['full']}")
        for name, image in images:
            h, w = image.shape[:2]
            for mode in modes:
                for setting in ([None] if mode == "boxes" else settings):
                    gen = make_generator(mode, predictor, args, setting)
                    kwargs = {"proposals": tiling_boxes(h, w)} if mode == "boxes" else {}
                    row = run_generator(gen, image, **kwargs)
                    row.update(photo=name, mode=mode, speed=speed, path=paths[speed]["short"],
                               filters=filters_label(setting), setting=setting)
                    rows.append(row)
                    log(f"{name} {speed} {mode} {row['filters']}: {row['cpu']['total']:.1f} CPU-s")
    return rows, paths


# ----------------------------------------------------------------------------- peers
def onnx_user_predictor_class():
    from pocketsam.predictor import SamPredictor, check_image

    class OnnxUserPredictor(SamPredictor):
        """A user of SAM's ONNX export, behind the predictor interface the generators call:
        ``set_image`` preprocesses and runs ``encoder.onnx`` (any runtime's callable),
        ``predict_batch_low_res`` runs the SAM-format ``decoder.onnx`` once per point
        (point + SAM's padding point) and returns its three multimask outputs. Everything
        else (coordinate mapping, upsampling of the survivors) is pocketsam's."""

        def __init__(self, sam, encoder, decoder_session) -> None:
            super().__init__(sam, mode="default")
            self.onnx_encoder = encoder
            self.session = decoder_session
            self.calls = 0

        def set_image(self, image, image_format="RGB") -> None:
            image = check_image(image)
            with torch.inference_mode():
                emb = self.onnx_encoder(self.pre.image(image))
            self.set_embedding(emb, image.shape[:2])

        def predict_batch_low_res(self, point_coords=None, point_labels=None, boxes=None, mask_input=None,
                                  multimask_output=True):
            assert boxes is None and mask_input is None and multimask_output
            coords = self._to_input_frame(point_coords).cpu().numpy().astype(np.float32).reshape(-1, 2)
            emb = np.ascontiguousarray(self.features.cpu().numpy())
            lh, lw = self.model.prompt_encoder.mask_input_size
            feeds = {
                "image_embeddings": emb, "point_labels": np.array([[1, -1]], np.float32),
                "mask_input": np.zeros((1, 1, lh, lw), np.float32), "has_mask_input": np.zeros(1, np.float32),
                "orig_im_size": np.array(self.original_size, np.float32),
            }
            lows, ious = [], []
            for xy in coords:
                feeds["point_coords"] = np.array([[xy, (0.0, 0.0)]], np.float32)
                _, iou, low = self.session.run(None, feeds)  # all outputs, as SAM's demo code asks for them
                self.calls += 1
                lows.append(low[:, 1:])  # output 0 is the single-mask output; 1..3 the multimask ones
                ious.append(iou[:, 1:])
            return torch.from_numpy(np.concatenate(lows)), torch.from_numpy(np.concatenate(ious))

    return OnnxUserPredictor


def peer_rows(sam, images, args, settings, threads) -> tuple[list[dict], dict]:
    from pocketsam import SamAutomaticMaskGenerator
    from pocketsam.export.onnx_sam import export_decoder, export_encoder
    from pocketsam.masks import build_point_grid
    from pocketsam.runtime.onnx import OrtImageEncoder, ort_session

    work = Path(tempfile.mkdtemp(prefix="pocketsam-everything-peers-"))
    log("peers: exporting SAM-format encoder.onnx and decoder.onnx (all four masks)")
    enc_path = export_encoder(sam, work / "encoder.onnx")
    dec_path = export_decoder(sam, work / "decoder.onnx", return_single_mask=False)
    dec_session = ort_session(dec_path, threads)
    ort_encoder = OrtImageEncoder(enc_path, sam.img_size, threads)

    n = args.points_per_side
    side = min(args.peer_sample_side, n)
    step = max(1, n // side)
    full = build_point_grid(n).reshape(n, n, 2)
    sample = full[::step, ::step].reshape(-1, 2)
    scale = (n * n) / len(sample)

    # OpenVINO last: nothing after this point spawns a subprocess
    from pocketsam.runtime import openvino as pov

    ov = {"OpenVINO f32": pov.OpenVINOImageEncoder.from_onnx(enc_path, sam.img_size, "f32", threads)}
    if pov.native_bf16():
        ov["OpenVINO bf16"] = pov.OpenVINOImageEncoder.from_onnx(enc_path, sam.img_size, "bf16", threads)
    Predictor = onnx_user_predictor_class()
    predictor = Predictor(sam, ort_encoder, dec_session)
    with torch.inference_mode():  # warm-up: every encoder once, the decoder once
        x = predictor.pre.image(images[0][1])
        for enc in [ort_encoder, *ov.values()]:
            enc(x)
        predictor.set_image(images[0][1])
        predictor.predict_batch_low_res(np.array([[10.0, 10.0]])[:, None], np.ones((1, 1), np.int32))
    rows = []
    for name, image in images:
        x = predictor.pre.image(image)
        enc_cpu = {}
        with torch.inference_mode():
            for label, enc in ov.items():
                c = time.process_time()
                enc(x)
                enc_cpu[label] = time.process_time() - c
        for setting in settings:
            gen = SamAutomaticMaskGenerator(predictor, points_per_side=None, point_grids=[sample],
                                            pred_iou_thresh=setting[0], stability_score_thresh=setting[1])
            predictor.calls = 0
            r = run_generator(gen, image)
            assert predictor.calls == len(sample)
            base = {"decoder": r["cpu"]["decoder"] * scale, "filtering": r["cpu"]["filtering"] * scale,
                    "post": r["cpu"]["post"]}
            other = r["cpu"]["total"] - sum(r["cpu"][k] for k in ("encoder", "decoder", "filtering", "post"))
            for label, enc_s in [("ONNX Runtime fp32", r["cpu"]["encoder"]), *enc_cpu.items()]:
                cpu = {"encoder": enc_s, **base}
                cpu["total"] = sum(cpu.values()) + other
                rows.append({"photo": name, "filters": filters_label(setting), "setting": setting,
                             "pipeline": f"{label} encoder + ORT decoder.onnx per point", "cpu": cpu,
                             "sampled": len(sample), "decoded": r["decoded"], "after_iou": r["after_iou"],
                             "returned_sample": r["returned"]})
            log(f"peers {name} {filters_label(setting)}: ORT total {rows[-len(enc_cpu) - 1]['cpu']['total']:.1f} CPU-s "
                f"(decoder {r['cpu']['decoder']:.1f} s for {len(sample)} points)")
    info = {"sample": len(sample), "grid": n * n, "scale": scale, "sample_side": len(range(0, n, step))}
    return rows, info


# ----------------------------------------------------------------------------- output
def markdown(header: dict, rows: list[dict], paths: dict, peers: list[dict] | None, peer_info: dict | None) -> str:
    out = [f"- {header['date']} · {header['cpu']} · flags {' '.join(header['flags'])} · {header['threads']} thread(s) "
           f"· load at start {header['load']}",
           f"- torch {header['torch']}, onnxruntime {header['onnxruntime']}, openvino {header['openvino']} · "
           f"{Path(header['checkpoint']).name} ({header['model']}) at {header['img_size']}² · "
           f"grid {header['points_per_side']}² · photos {', '.join(header['photos'])}",
           f"- `{header['command']}`"]
    for speed, p in paths.items():
        out.append(f"- {speed}: {p['full']} (set-up {p['setup_cpu_s']:.1f} CPU-s, not in the rows)")
    out += ["", "| photo | filters | mode | speed → path | prompts | masks: decoded → IoU → stable → returned "
            "| encoder | decoder | filtering | post | total CPU s | wall s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["cpu"]
        speed = r["speed"] if r["path"] == r["speed"] else f"{r['speed']} → {r['path'].split('→ ')[-1]}"
        out.append(f"| {r['photo']} | {r['filters']} | {r['mode']} | {speed} | {r['prompts']} | {r['decoded']} → "
                   f"{r['after_iou']} → {r['after_stability']} → {r['returned']} | {c['encoder']:.2f} | "
                   f"{c['decoder']:.2f} | {c['filtering']:.2f} | {c['post']:.2f} | **{c['total']:.2f}** | "
                   f"{r['wall']:.1f} |")
    if peers:
        pi = peer_info
        out += ["", f"Peers: grid {header['points_per_side']}² as a user of SAM's ONNX export runs it "
                f"(decoder.onnx once per point, ONNX Runtime fp32, {header['threads']} thread(s)). "
                f"**Sampled**: {pi['sample']} of {pi['grid']} points ({pi['sample_side']}² sub-grid) decoded and "
                f"filtered; decoder and filtering CPU-s ×{pi['scale']:g} to the full grid. pocketsam columns: the "
                "grid rows above, same photo and filters.", "",
                "| photo | filters | pipeline | encoder | decoder (×scale) | filtering (×scale) | total CPU s "
                "| pocketsam default | ÷ default | pocketsam fast | ÷ fast |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in peers:
            c = r["cpu"]
            own = {row["speed"]: row["cpu"]["total"] for row in rows
                   if row["photo"] == r["photo"] and row["mode"] == "grid" and row["setting"] == r["setting"]}
            d, f = own.get("default"), own.get("fast")
            ratio = (lambda v: f"{c['total'] / v:.1f}×" if v else "–")
            seconds = (lambda v: "–" if v is None else f"{v:.2f}")
            out.append(f"| {r['photo']} | {r['filters']} | {r['pipeline']} | {c['encoder']:.2f} | {c['decoder']:.1f} | "
                       f"{c['filtering']:.2f} | **{c['total']:.1f}** | {seconds(d)} | {ratio(d)} | {seconds(f)} | {ratio(f)} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=str(SHARED / "photos"), help="folder of images (all of them run)")
    ap.add_argument("--image", help="one image instead of --photos")
    ap.add_argument("--checkpoint", default=str(SHARED / "golden" / "vit_t_random.pt"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--pred-iou-thresh", default="0.88,0",
                    help="comma list, paired with --stability-score-thresh: one threshold setting each "
                         "(default: SAM's 0.88/0.95, then the worst case 0/0)")
    ap.add_argument("--stability-score-thresh", default="0.95,0")
    ap.add_argument("--modes", default="grid,hierarchical,boxes")
    ap.add_argument("--speeds", default="default,fast", help="speed modes, comma-separated")
    ap.add_argument("--peers", action="store_true",
                    help="also SAM's ONNX export as its users run it (ONNX Runtime / OpenVINO encoder, decoder.onnx "
                         "per point)")
    ap.add_argument("--peer-sample-side", type=int, default=16,
                    help="peers decode a sub-grid of about this many points a side and scale to the full grid")
    ap.add_argument("--reference", action="store_true", help="also time a reference-style grid run (first photo)")
    ap.add_argument("--output", help="also write the markdown here")
    args = ap.parse_args()
    settings = settings_of(args)

    from pocketsam import build_sam
    from pocketsam.io import list_images, load_image
    from pocketsam.export.onnx_sam import model_type_name
    from pocketsam.platform import configure_threads, cpu_name, relevant_flags

    threads = configure_threads(args.threads)
    files = [Path(args.image)] if args.image else list_images(args.photos)
    images = [(p.name, load_image(p)) for p in files]
    sam = build_sam(checkpoint=args.checkpoint)
    header = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_name(),
              "flags": relevant_flags(), "threads": threads, "load": [round(v, 2) for v in os.getloadavg()],
              "torch": torch.__version__, "checkpoint": args.checkpoint, "img_size": sam.img_size,
              "model": model_type_name(sam), "points_per_side": args.points_per_side, "photos": [n for n, _ in images],
              "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
    try:
        import onnxruntime

        header["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        header["onnxruntime"] = "–"
    log(f"{header['cpu']}; {' '.join(header['flags'])}; {threads} thread(s); POCKETSAM_CACHE "
        f"{os.environ['POCKETSAM_CACHE']}")
    cpu0, t0 = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "no masks although the checkpoint recommends…" warnings
        rows, paths = pocketsam_rows(sam, images, args, settings)
        ref = None
        if args.reference:
            ref = reference_style_grid(sam, images[0][1], args.points_per_side, *settings[0])
        peers = peer_info = None
        if args.peers:
            peers, peer_info = peer_rows(sam, images, args, settings, threads)
    try:
        from importlib.metadata import version

        header["openvino"] = version("openvino")
    except Exception:  # noqa: BLE001 - not installed
        header["openvino"] = "–"
    text = markdown(header, rows, paths, peers, peer_info)
    if ref is not None:
        secs, kept = ref
        grid = next((r for r in rows if r["mode"] == "grid" and r["setting"] == settings[0]), None)
        speed = f", speed-up of grid mode ({grid['speed']}, wall) {secs / grid['wall']:.1f}x" if grid else ""
        text += (f"\n\nreference-style grid on {images[0][0]} ({filters_label(settings[0])}): {secs:.2f} s wall "
                 f"({kept} masks after filters){speed}")
    text += f"\n\nbench: {time.process_time() - cpu0:.0f} CPU-s, {time.perf_counter() - t0:.0f} s wall"
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
