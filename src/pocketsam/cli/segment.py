"""``pocketsam segment``: masks for points and/or a box on one image, or for several boxes.

Example::

    pocketsam segment dog.jpg --checkpoint mobile_sam.pt --point 420,310 --point=-5,3,0 \\
        --box 100,80,700,600 --multimask --out out/dog
    pocketsam segment street.jpg --box 10,20,200,300 --box 250,40,400,310 --out out/street

Points and one box make one prompt (one mask set). Several ``--box`` options make one
prompt each, decoded as a batch (SAM's ``predict_torch`` with boxes): one mask set per
box. Points cannot be combined with several boxes (which box would they refine?).

Which mask a prompt gives is the one click rule of :mod:`pocketsam.prompts`, the same as
the web app's and the ONNX decoder's: a single click returns the best of SAM's three
multimask outputs (the highest predicted IoU); several points, or a box, return SAM's
single-mask output; ``--multimask`` returns all three multimask outputs, best first.

Writes into ``--out``:

* ``mask_0.png`` … ``mask_{N-1}.png`` — each mask white (255) on black (0), image-sized,
  best first (with several boxes: box by box, in the order given, best first for each);
* ``overlay.png`` — the image with the best mask (of each box) tinted and outlined,
  prompts drawn;
* ``masks.json`` — ``{"image": <path as given>, "masks": [{"segmentation": COCO RLE,
  "score": float, "bbox": [x, y, w, h], "area": int}, ...]}`` in the order of the PNGs;
  with several boxes each record also has ``"box": [x0, y0, x1, y1]``, its prompt.

The files replace an earlier run's as a whole. Everything that can be checked without the model
(prompt syntax, checkpoint path, output directory, device, image, prompts inside the
image) is checked first, so mistakes are reported in well under a second.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from pocketsam.cli.common import (
    add_speed_argument,
    check_device,
    check_output_dir,
    resolve_checkpoint,
    say_bundled,
    say_speed,
    warnings_as_lines,
)
from pocketsam.errors import InputError
from pocketsam.prompts import Prompts, check_prompts_inside

_NUM = r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*"


def register(subparsers: Any) -> None:
    """Add the ``segment`` sub-command to the ``pocketsam`` parser."""
    p = subparsers.add_parser(
        "segment",
        help="masks for points and/or a box on one image, or for several boxes",
        description=(
            "Segment the object(s) indicated by point and/or box prompts. Coordinates are "
            "pixels of the image as displayed (EXIF rotation applied), x to the right, y down. "
            "Write negative numbers with '=' (e.g. --point=-3,5) so they are not taken for options."
        ),
    )
    p.add_argument("image", help="image file (JPEG, PNG, WebP, TIFF, BMP, ...)")
    p.add_argument(
        "--checkpoint",
        "-c",
        default=None,
        help="SAM / MobileSAM / TinySAM checkpoint (.pt/.pth/.safetensors; the architecture is detected "
        "from the file), the name of downloaded official weights (mobile_sam ...), or bundled "
        "(the default: pocketsam's small model, trained on synthetic scenes)",
    )
    p.add_argument(
        "--model-type",
        default=None,
        help="force an architecture (vit_h, vit_l, vit_b, vit_t, ...) instead of detecting it",
    )
    p.add_argument(
        "--point",
        "-p",
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="a point prompt; LABEL 1 = foreground (default), 0 = background. Repeatable",
    )
    p.add_argument(
        "--box",
        "-b",
        action="append",
        default=[],
        metavar="X0,Y0,X1,Y1",
        help="a box prompt (corners). Repeatable: one mask set per box (then without --point)",
    )
    p.add_argument(
        "--multimask",
        action="store_true",
        help="return all 3 of SAM's multimask outputs, best predicted IoU first. Without it each prompt "
        "gives one mask: for a single click the best of the 3 multimask outputs, for several points or "
        "a box SAM's single-mask output",
    )
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1, mps (default cpu)")
    add_speed_argument(p)
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="refuse images larger than N pixels (default about 179 million)",
    )
    p.set_defaults(func=run)


# --------------------------------------------------------------------- validation


def _parse_numbers(text: str, count: int, what: str, example: str) -> list[float]:
    parts = text.split(",")
    if len(parts) != count or not all(re.fullmatch(_NUM, s) for s in parts):
        raise InputError(f"malformed {what} '{text}'", f"write it as {example}")
    values = [float(s) for s in parts]
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"malformed {what} '{text}': numbers must be finite", f"write it as {example}")
    return values


def parse_point(text: str) -> tuple[float, float, int]:
    """Parse ``"X,Y"`` or ``"X,Y,LABEL"`` (LABEL 0 or 1, default 1).

    Raises:
        InputError: wrong number of fields, non-numbers, or a label other than 0/1.
    """
    parts = text.split(",")
    example = "X,Y or X,Y,LABEL with LABEL 1 (foreground) or 0 (background), e.g. --point 320,240"
    if len(parts) == 3:
        label_text = parts[2].strip()
        if label_text not in ("0", "1"):
            raise InputError(
                f"point '{text}' has label '{parts[2]}'",
                "the label must be 1 (foreground) or 0 (background), e.g. --point 320,240,0",
            )
        x, y = _parse_numbers(",".join(parts[:2]), 2, "point", example)
        return x, y, int(label_text)
    x, y = _parse_numbers(text, 2, "point", example)
    return x, y, 1


def parse_box(text: str) -> tuple[float, float, float, float]:
    """Parse ``"X0,Y0,X1,Y1"`` with X1 > X0 and Y1 > Y0.

    Raises:
        InputError: malformed, or corners in the wrong order / degenerate box.
    """
    example = "X0,Y0,X1,Y1 (top-left and bottom-right corners), e.g. --box 10,20,300,400"
    x0, y0, x1, y1 = _parse_numbers(text, 4, "box", example)
    if x1 <= x0 or y1 <= y0:
        raise InputError(
            f"box '{text}' is empty or inverted (need X1 > X0 and Y1 > Y0)",
            "give the top-left corner first, then the bottom-right, e.g. --box 10,20,300,400",
        )
    return x0, y0, x1, y1


def parse_prompts(point_args: list[str], box_args: list[str]) -> Prompts:
    """Parse and syntax-check all prompts; at least one is required, and points go with
    at most one box."""
    prompts = Prompts()
    for text in point_args:
        x, y, label = parse_point(text)
        prompts.points.append((x, y))
        prompts.labels.append(label)
    prompts.boxes = [parse_box(text) for text in box_args]
    if prompts.points and len(prompts.boxes) > 1:
        raise InputError(
            f"--point cannot be combined with several boxes ({len(prompts.boxes)} --box given)",
            "give points with at most one --box, or only boxes (one mask set per box)",
        )
    if not prompts.points and not prompts.boxes:
        raise InputError(
            "no prompt given",
            "add --point X,Y (repeatable; X,Y,0 for background) and/or --box X0,Y0,X1,Y1",
        )
    if prompts.points and all(lab == 0 for lab in prompts.labels) and not prompts.boxes:
        raise InputError(
            "only background points given: nothing says what to segment",
            "add a foreground point (--point X,Y) or a --box",
        )
    return prompts


# --------------------------------------------------------------------------- running


def run(args: argparse.Namespace) -> int:
    """Validate everything, run the predictor, write the outputs. Returns the exit code."""
    from pocketsam.io import DEFAULT_MAX_PIXELS, load_image

    prompts = parse_prompts(args.point, args.box)
    if args.max_pixels is not None and args.max_pixels <= 0:
        raise InputError(f"--max-pixels must be positive, got {args.max_pixels}")
    checkpoint = resolve_checkpoint(args.checkpoint)
    out_dir = check_output_dir(args.out)
    device = check_device(args.device)
    image = load_image(args.image, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    height, width = image.shape[:2]
    check_prompts_inside(prompts, width, height)
    say_bundled(checkpoint)  # once the input is known good, before the (slow) model

    # --- the model: only now
    import numpy as np

    from pocketsam import SamPredictor, build_sam

    with warnings_as_lines():
        sam = build_sam(model_type=args.model_type, checkpoint=checkpoint, device=device)
    predictor = SamPredictor(sam, mode=args.speed)
    predictor.set_image(image)
    say_speed(predictor)
    if len(prompts.boxes) > 1:  # one prompt per box, decoded as one batch; a box is unambiguous
        import torch

        boxes = torch.as_tensor(prompts.boxes, dtype=torch.float32)
        masks_t, scores_t, _ = predictor.predict_batch(boxes=boxes, multimask_output=args.multimask)
        masks, scores = masks_t.cpu().numpy(), scores_t.float().cpu().numpy()
    else:
        from pocketsam.prompts import predict_prompt  # the one click rule

        masks, scores, _ = predict_prompt(
            predictor,
            point_coords=np.asarray(prompts.points, dtype=np.float64) if prompts.points else None,
            point_labels=np.asarray(prompts.labels, dtype=np.int64) if prompts.points else None,
            box=np.asarray(prompts.boxes[0], dtype=np.float64) if prompts.boxes else None,
            multimask_output=args.multimask,
        )
        masks, scores = masks[None], scores[None]
    order = np.argsort(-scores, axis=1, kind="stable")  # best first, per prompt
    masks = np.take_along_axis(masks, order[:, :, None, None], axis=1)
    scores = np.take_along_axis(scores, order, axis=1)

    written = write_outputs(out_dir, args.image, image, masks, scores, prompts)
    n = masks.shape[0] * masks.shape[1]
    if len(masks) == 1:
        best = f"best score {scores[0, 0]:.3f}, {int(masks[0, 0].sum())} px"
    else:
        best = "best scores " + ", ".join(f"{v:.3f}" for v in scores[:, 0])
    print(f"{n} mask{'s' * (n != 1)} for {prompts.describe()} ({best}) -> {out_dir}/: {', '.join(written)}")
    return 0


def write_outputs(
    out_dir: Path,
    image_arg: str,
    image: Any,
    masks: Any,
    scores: Any,
    prompts: Prompts,
) -> list[str]:
    """Write the mask PNGs, overlay and masks.json into ``out_dir``, replacing an earlier
    run's outputs as a whole (:func:`pocketsam.io.replace_files_together`): on any failure
    the folder keeps its previous outputs; on success, masks beyond the new count are
    removed. Other files in ``out_dir`` are left alone.

    Args:
        image: uint8 H×W×3.
        masks: P×C×H×W bool, one row per prompt (P > 1: one per box of ``prompts``),
            each row best first; or C×H×W for one prompt.
        scores: P×C (or C), matching ``masks``.
    Returns:
        the names written, for the summary line.
    """
    import numpy as np

    from pocketsam.io import replace_files_together, save_png_atomic, write_json_atomic
    from pocketsam.masks import encode_rle, mask_bbox_xywh
    from pocketsam.viz import draw_prompts, overlay_masks

    masks, scores = np.asarray(masks), np.asarray(scores)
    if masks.ndim == 3:
        masks, scores = masks[None], scores[None]
    per_box = len(masks) > 1
    records = []
    for row, (row_masks, row_scores) in enumerate(zip(masks, scores)):
        for mask, score in zip(row_masks, row_scores):
            rec = {"segmentation": encode_rle(mask), "score": float(score), "bbox": mask_bbox_xywh(mask),
                   "area": int(mask.sum())}
            if per_box:
                rec["box"] = [float(v) for v in prompts.boxes[row]]
            records.append(rec)
    overlay = overlay_masks(image, masks[:, 0])  # the best mask of each prompt
    overlay = draw_prompts(
        overlay,
        points=prompts.points or None,
        labels=prompts.labels or None,
        boxes=prompts.boxes or None,
    )

    def stale(name: str) -> bool:  # masks of an earlier run with more masks would contradict masks.json
        return re.fullmatch(r"mask_\d+\.png", name) is not None

    flat = masks.reshape(-1, *masks.shape[2:])
    with replace_files_together(out_dir, last=("masks.json",), stale=stale) as stage:
        for i, mask in enumerate(flat):
            save_png_atomic(mask, stage / f"mask_{i}.png")
        save_png_atomic(overlay, stage / "overlay.png")
        write_json_atomic({"image": image_arg, "masks": records}, stage / "masks.json")

    names = ["mask_0.png"] if len(flat) == 1 else [f"mask_0.png … mask_{len(flat) - 1}.png"]
    return names + ["overlay.png", "masks.json"]
