"""``pocketsam quantize``: post-training int8 quantisation (Q-TinySAM-style W8A8) of a
checkpoint's image encoder, calibrated on a folder of images, written as a safe int8
artifact folder (:mod:`pocketsam.quant`) that every command loads with ``--checkpoint OUT``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="int8-quantise a checkpoint (calibrated on a folder of images) into an artifact folder",
        description="Quantise the image encoder to static int8 (per-channel symmetric int8 weights, per-tensor "
        "uint8 activations whose clipping ranges are searched by the error of the layer that reads them), "
        "calibrated on --calib images, and write OUT/: encoder.int8.onnx (ONNX Runtime), model.safetensors "
        "(the float model) and pocketsam_int8.json (checksums, settings, measured quality). Load it with "
        "--checkpoint OUT or build_sam(checkpoint=OUT); it then runs the int8 speed mode.",
    )
    p.add_argument("checkpoint", nargs="?", default=None, help="float checkpoint (default: the bundled model)")
    p.add_argument("--calib", required=True, metavar="DIR",
                   help="folder of calibration images, like those you will segment (a few are enough)")
    p.add_argument("--num-images", type=int, default=32, metavar="N",
                   help="use the first N images of --calib, by name (default 32)")
    p.add_argument("--out", "-o", required=True, metavar="OUT", help="artifact folder to write")
    p.add_argument("--model-type", default=None, help="architecture name if it cannot be detected")
    p.add_argument("--int8-layers", choices=("linear", "all"), default="linear",
                   help="linear: the encoder's linear layers (default; convolutions stay float32, which "
                        "measured as fast and far more accurate); all: convolutions too")
    p.add_argument("--float-layers", default="first,last", metavar="LIST",
                   help="quantisable layers kept in float32: first,last (default), first, last or none")
    p.add_argument("--no-search", action="store_true", help="plain min/max activation ranges (no clipping search)")
    p.add_argument("--measure", type=int, default=4, metavar="N",
                   help="calibration images on which to record mask IoU against float32 (default 4; 0 skips)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: POCKETSAM_THREADS or the cores)")
    p.add_argument("--backend", choices=("pocketsam", "openvino"), default="pocketsam",
                   help="pocketsam: its own int8 encoder (torch oneDNN / ONNX Runtime; default); openvino: NNCF "
                        "post-training int8 run by OpenVINO (needs the [openvino] extra); --int8-layers, "
                        "--float-layers and --no-search apply to pocketsam's only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pocketsam.errors import InputError
    from pocketsam.io import remove_stale_staging, terminate_as_interrupt
    from pocketsam.quant import quantize_checkpoint
    from pocketsam.runtime import configure_threads

    floats = tuple(f.strip() for f in args.float_layers.split(",") if f.strip() and f.strip() != "none")
    bad = [f for f in floats if f not in ("first", "last")]
    if bad:
        raise InputError(f"--float-layers: unknown value(s) {', '.join(bad)}", "use first,last / first / last / none")
    if args.measure < 0:
        raise InputError(f"--measure must be >= 0, got {args.measure}")
    threads = configure_threads(args.threads)
    # a killed run's staging folder (.OUT.<hex>.tmp, tens of MB) goes now, not only when
    # this run writes; SIGTERM cleans up as Ctrl-C does (the staging folder, the temp folder)
    remove_stale_staging(Path(args.out))
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.backend == "openvino":
        from pocketsam.quant.openvino import quantize_checkpoint_openvino

        with terminate_as_interrupt():
            art = quantize_checkpoint_openvino(args.checkpoint, args.calib, args.out, num_images=args.num_images,
                                               model_type=args.model_type, log=say, measure=args.measure,
                                               threads=threads)
        q = art.meta.get("quality")
        print(f"OpenVINO int8 artifact: {art.folder}")
        if q:
            print(f"  mask IoU vs float32 ({q['images']} calibration image(s)): {q['mask_iou_vs_fp32']:.4f}; "
                  f"embedding relative L2 error {q['embedding_rel_l2']:.4f}")
        print(f"  use it: pocketsam segment IMG --checkpoint {art.folder} ...  (runs the int8 speed mode on OpenVINO)")
        return 0
    with terminate_as_interrupt():
        art = quantize_checkpoint(
            args.checkpoint, args.calib, args.out, num_images=args.num_images, model_type=args.model_type,
            log=say, search=not args.no_search,
            int8_layers=args.int8_layers, float_layers=floats, measure=args.measure, threads=threads,
        )
    meta = art.meta
    cal = meta["calibration"]
    print(f"int8 artifact: {art.folder}")
    print(f"  calibration: {cal['images']} image(s) from {args.calib}; {cal['range_search']}")
    if cal.get("mean_rel_err_searched") is not None:
        print(f"  layer output error (mean relative): min/max {cal['mean_rel_err_minmax']:.2e}, "
              f"searched {cal['mean_rel_err_searched']:.2e} ({cal['clipped']} of {cal['searched']} ranges clipped)")
    q = meta.get("quality")
    if q:
        print(f"  mask IoU vs float32 ({q['images']} calibration image(s)): points {q.get('mask_iou_point', 0):.4f}, "
              f"boxes {q.get('mask_iou_box', 0):.4f}, all {q['mask_iou_vs_fp32']:.4f}; "
              f"embedding relative L2 error {q['embedding_rel_l2']:.4f}")
    print(f"  use it: pocketsam segment IMG --checkpoint {art.folder} ...  (runs the int8 speed mode)")
    return 0
