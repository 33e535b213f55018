"""Segment Anything's ONNX interface: ``encoder.onnx``, ``encoder_rgb.onnx``, ``decoder.onnx``
and ``config.json`` for any pocketsam model (SAM, MobileSAM, TinySAM, pocketsam's own).

``decoder.onnx`` has the interface of segment_anything's ``SamOnnxModel`` (what the SAM web
demo, AnyLabeling, ISAT and CVAT's SAM plugins load):

========================  =========================  =====================================
input                     shape, dtype               meaning
========================  =========================  =====================================
``image_embeddings``      1×C×h×w float32            the encoder's output (C = 256, h = w = S/16)
``point_coords``          B×N×2 float32              (x, y) in the *resized* frame (long side S),
                                                     ``predictor.transform.apply_coords``
``point_labels``          B×N float32                1 foreground, 0 background, 2/3 box
                                                     corners, -1 padding point
``mask_input``            1×1×4h×4w float32          low-res logits of an earlier call
``has_mask_input``        1 float32                  1 to use ``mask_input``, else 0
``orig_im_size``          2 float32                  (H, W) of the original image
========================  =========================  =====================================

Outputs: ``masks`` (B×M×H×W logits at the original size; threshold at 0),
``iou_predictions`` (B×M), ``low_res_masks`` (B×M×4h×4w logits). ``N`` (and ``B``) are
dynamic. SAM's conventions apply: without a box, append a padding point ``(0, 0)`` with
label -1; a box is two points labelled 2 and 3 and needs no padding point.

With ``return_single_mask`` (the default, as in SAM's demo) M = 1, chosen per prompt by
pocketsam's one click rule (:mod:`pocketsam.prompts`, the same in ``pocketsam segment`` and
the web app): for SAM-style decoders the best of the three multimask outputs (highest
predicted IoU) when the prompt is exactly one click (one point labelled 0 or 1) and no box,
else the single-mask output; applied without control flow. (SAM's own exported model counts
N instead, so a box alone would get a multimask output there; pocketsam follows SAM's
guidance that a box is not ambiguous.) TinySAM's decoder (``multimask_only``) always
returns its best multimask output, since its single-mask token was never trained. Without
``return_single_mask`` M = 4 (output 0, then the three multimask outputs).

``encoder.onnx`` maps the preprocessed ``image`` (1×3×S×S float32: normalised with
``config.json``'s mean/std, zero-padded bottom/right) to ``image_embeddings``.
``encoder_rgb.onnx`` takes ``input_image`` (H×W×3 uint8 RGB, any size) and does the resize
(long side S, bilinear with antialiasing like PIL), the normalisation and the padding inside
(opset 18, for Resize's ``antialias``).

``encoder_int8.onnx`` (``--int8``) is :mod:`pocketsam.quant`'s static int8 (W8A8, QDQ)
image encoder with ``encoder.onnx``'s interface, for ONNX Runtime (it uses ONNX Runtime's
``com.microsoft`` kernels): the checkpoint's own int8 artifact when it is one (made by
``pocketsam quantize``), else one calibrated on ``--calib`` images, else on pocketsam's
synthetic scenes (cached per machine). Its weights are stored as uint8 with zero point 128
(the same numbers), which ONNX Runtime runs with kernels that cannot saturate on x86 CPUs
without VNNI (:func:`pocketsam.quant.onnx_int8.unsigned_weights`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from pocketsam.checkpoints import weights_sha256
from pocketsam.errors import InputError
from pocketsam.io import atomic_path, read_json, sha256_file, write_json_atomic
from pocketsam.models.registry import MODEL_CONFIGS
from pocketsam.models.mask_decoder import best_multimask
from pocketsam.models.sam import Sam
from pocketsam.quant import artifact_for, quantize_model
from pocketsam.runtime import onnx as runtime_onnx
from pocketsam.runtime.fold import inference_copy
from pocketsam.runtime.int8_onnx import unsigned_weights
from pocketsam.version import __version__

OPSET = 17
RGB_OPSET = 18  # Resize's antialias attribute
PARTS = ("decoder", "encoder", "encoder_rgb", "encoder_int8")
DEFAULT_PARTS = ("decoder", "encoder", "encoder_rgb")
FILES = {"decoder": "decoder.onnx", "encoder": "encoder.onnx", "encoder_rgb": "encoder_rgb.onnx",
         "encoder_int8": "encoder_int8.onnx"}
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")


class SamOnnxDecoder(nn.Module):
    """The prompt encoder + mask decoder + mask post-processing of ``sam`` behind SAM's
    ONNX decoder interface (see the module docstring). Runs in torch as well (tests compare
    it with its export); its mask selection is :mod:`pocketsam.prompts`' click rule, which
    the server and the CLI apply through the predictor."""

    def __init__(self, sam: Sam, return_single_mask: bool = True) -> None:
        super().__init__()
        self.img_size = int(sam.img_size)
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.return_single_mask = return_single_mask
        self.multimask_only = sam.config.decoder.multimask_only
        self.register_buffer("image_pe", sam.prompt_encoder.get_dense_pe().detach().clone(), persistent=False)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        emb = pe.pe_layer._pe_encoding((coords + 0.5) / self.img_size)
        labels = labels.unsqueeze(-1).expand_as(emb)
        emb = emb * (labels != -1) + pe.not_a_point_embed.weight * (labels == -1)
        for i in range(pe.num_point_embeddings):
            emb = emb + pe.point_embeddings[i].weight * (labels == i)
        return emb

    def _embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return has_mask_input * pe.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask

    def _select(self, masks: torch.Tensor, iou: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pocketsam.prompts.default_multimask, per prompt row, as tensor arithmetic (no
        control flow, so one exported graph serves every prompt shape)."""
        best_multi = best_multimask(iou)
        if self.multimask_only:
            best = best_multi
        else:
            clicks = ((labels == 0) | (labels == 1)).sum(dim=1)
            has_box = ((labels == 2) | (labels == 3)).any(dim=1)
            single_click = (clicks == 1) & ~has_box
            best = torch.where(single_click, best_multi, torch.zeros_like(best_multi))
        rows = torch.arange(masks.shape[0], device=masks.device)
        return masks[rows, best].unsqueeze(1), iou[rows, best].unsqueeze(1)

    def _postprocess(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        size = orig_im_size.to(torch.float32)
        scale = self.img_size / torch.max(size)
        pre = torch.floor(size * scale + 0.5).to(torch.int64)  # ResizeLongestSide.get_preprocess_shape
        orig = orig_im_size.to(torch.int64)
        if not torch.jit.is_tracing():  # eager: plain ints for slicing / interpolate
            pre, orig = [int(v) for v in pre], [int(v) for v in orig]
        masks = F.interpolate(masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        masks = masks[..., : pre[0], : pre[1]]
        return F.interpolate(masks, size=(orig[0], orig[1]), mode="bilinear", align_corners=False)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_mask(mask_input, has_mask_input)
        masks, iou = self.mask_decoder.predict_masks(image_embeddings, self.image_pe, sparse, dense)
        if self.return_single_mask:
            masks, iou = self._select(masks, iou, point_labels)
        return self._postprocess(masks, orig_im_size), iou, masks


def model_type_name(sam: Sam) -> str:
    """The registry name of ``sam``'s configuration (``vit_t``, ``tinysam``, ``vit_b``,
    ``pocketsam_tiny`` ...), or ``custom_<family>`` for any other configuration."""

    for name, config in MODEL_CONFIGS.items():
        if name != "mobile_sam" and config == sam.config:
            return name
    return f"custom_{sam.config.family}"


def _dummy_decoder_inputs(sam: Sam, batch: int, points: int) -> tuple[torch.Tensor, ...]:
    h, w = sam.prompt_encoder.image_embedding_size
    dim = sam.prompt_encoder.embed_dim
    mh, mw = sam.prompt_encoder.mask_input_size
    gen = torch.Generator().manual_seed(0)
    coords = torch.randint(0, sam.img_size, (batch, points, 2), generator=gen).float()
    labels = torch.randint(-1, 4, (batch, points), generator=gen).float()
    return (
        torch.randn(1, dim, h, w, generator=gen), coords, labels,
        torch.randn(1, 1, mh, mw, generator=gen), torch.tensor([1.0]),
        torch.tensor([sam.img_size * 0.75, sam.img_size * 1.0]),
    )


def export_decoder(sam: Sam, path: str | Path, return_single_mask: bool = True, opset: int = OPSET) -> Path:
    """Write ``decoder.onnx`` (SAM's interface, dynamic number of points and prompts)."""
    path = Path(path)
    module = SamOnnxDecoder(_float_cpu(sam), return_single_mask).eval()
    # traced with 2 prompts so that the one-image-for-all-prompts broadcast is kept
    runtime_onnx.export_graph(
        module, _dummy_decoder_inputs(sam, 2, 3), path, list(DECODER_INPUTS), list(DECODER_OUTPUTS),
        {"point_coords": {0: "prompts", 1: "num_points"}, "point_labels": {0: "prompts", 1: "num_points"},
         "masks": {0: "prompts", 2: "height", 3: "width"}, "iou_predictions": {0: "prompts"},
         "low_res_masks": {0: "prompts"}},
        opset=opset,
    )
    return path


def _float_cpu(sam: Sam) -> Sam:
    return inference_copy(sam).cpu().float()


def export_encoder(sam: Sam, path: str | Path, opset: int = OPSET) -> Path:
    """Write ``encoder.onnx``: preprocessed 1×3×S×S ``image`` → ``image_embeddings``
    (BatchNorm folded into the convolutions, float32)."""
    return runtime_onnx.export_encoder(sam, Path(path), opset, output="image_embeddings")


def preprocess_graph(sam: Sam, opset: int = RGB_OPSET):
    """An ONNX model: ``input_image`` (H×W×3 uint8 RGB) → ``image`` (1×3×S×S float32), the
    same steps as :class:`~pocketsam.SamPredictor.set_image`: resize the long side to S
    (bilinear, antialiased when shrinking, rounded to uint8 like PIL), normalise, pad
    bottom/right with zeros."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = int(sam.img_size)
    mean = np.asarray(sam.pixel_mean.detach().cpu().float()).reshape(1, 3, 1, 1).astype(np.float32)
    std = np.asarray(sam.pixel_std.detach().cpu().float()).reshape(1, 3, 1, 1).astype(np.float32)

    def const(name: str, value: Any, dtype: Any) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    inits = [
        const("pre_start", [0], np.int64), const("pre_two", [2], np.int64),
        const("pre_size", [float(size)], np.float32), const("pre_half", [0.5], np.float32),
        const("pre_s_int", [size, size], np.int64), const("pre_nc", [1, 3], np.int64),
        const("pre_zeros6", [0] * 6, np.int64), const("pre_axis0", [0], np.int64),
        const("pre_lo", 0.0, np.float32), const("pre_hi", 255.0, np.float32),
        const("pre_mean", mean, np.float32), const("pre_std", std, np.float32),
        const("pre_pad_value", 0.0, np.float32),
    ]
    N = helper.make_node
    nodes = [
        N("Shape", ["input_image"], ["pre_shape"]),
        N("Slice", ["pre_shape", "pre_start", "pre_two"], ["pre_hw"]),
        N("Cast", ["pre_hw"], ["pre_hw_f"], to=TensorProto.FLOAT),
        N("ReduceMax", ["pre_hw_f"], ["pre_long"], keepdims=1),
        N("Div", ["pre_size", "pre_long"], ["pre_scale"]),
        N("Mul", ["pre_hw_f", "pre_scale"], ["pre_scaled"]),
        N("Add", ["pre_scaled", "pre_half"], ["pre_scaled_half"]),
        N("Floor", ["pre_scaled_half"], ["pre_new_f"]),
        N("Cast", ["pre_new_f"], ["pre_new_hw"], to=TensorProto.INT64),
        N("Cast", ["input_image"], ["pre_float"], to=TensorProto.FLOAT),
        N("Transpose", ["pre_float"], ["pre_chw"], perm=[2, 0, 1]),
        N("Unsqueeze", ["pre_chw", "pre_axis0"], ["pre_nchw"]),
        N("Concat", ["pre_nc", "pre_new_hw"], ["pre_sizes"], axis=0),
        N("Resize", ["pre_nchw", "", "", "pre_sizes"], ["pre_resized"], mode="linear", antialias=1,
          coordinate_transformation_mode="half_pixel"),
        N("Round", ["pre_resized"], ["pre_rounded"]),
        N("Clip", ["pre_rounded", "pre_lo", "pre_hi"], ["pre_u8"]),
        N("Sub", ["pre_u8", "pre_mean"], ["pre_centered"]),
        N("Div", ["pre_centered", "pre_std"], ["pre_normed"]),
        N("Sub", ["pre_s_int", "pre_new_hw"], ["pre_pad_hw"]),
        N("Concat", ["pre_zeros6", "pre_pad_hw"], ["pre_pads"], axis=0),
        N("Pad", ["pre_normed", "pre_pads", "pre_pad_value"], ["image"], mode="constant"),
    ]
    graph = helper.make_graph(
        nodes, "pocketsam_preprocess",
        [helper.make_tensor_value_info("input_image", TensorProto.UINT8, ["height", "width", 3])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def export_encoder_rgb(sam: Sam, path: str | Path) -> Path:
    """Write ``encoder_rgb.onnx``: ``input_image`` (H×W×3 uint8 RGB) → ``image_embeddings``,
    preprocessing inside (:func:`preprocess_graph` merged in front of the encoder)."""
    import onnx
    from onnx import compose

    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        enc_path = export_encoder(sam, Path(tmp) / "encoder18.onnx", opset=RGB_OPSET)
        encoder = onnx.load(str(enc_path))
        pre = preprocess_graph(sam, RGB_OPSET)
        pre.ir_version = encoder.ir_version
        merged = compose.merge_models(pre, encoder, io_map=[("image", "image")], prefix2="enc_")
        # keep the public names unprefixed
        for out in merged.graph.output:
            if out.name == "enc_image_embeddings":
                _rename(merged.graph, "enc_image_embeddings", "image_embeddings")
        onnx.checker.check_model(merged)
        with atomic_path(path) as staged:
            onnx.save(merged, str(staged))
    return path


def export_encoder_int8(sam: Sam, path: str | Path, calib_images: list | None = None,
                        log: Any = None) -> dict[str, Any]:
    """Write ``encoder_int8.onnx`` (see the module docstring). Returns what config.json
    records about it (calibration, measured quality when known)."""
    import onnx


    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        if calib_images:
            art = quantize_model(sam, calib_images, Path(tmp) / "int8", measure=0, source="export --calib", log=log)
        else:
            art = artifact_for(sam, log=log).info.int8
        model = onnx.load(str(art.encoder_path))
        # A deployed file runs on CPUs we do not know: uint8 weights cannot saturate the
        # int16 pair sums of x86 kernels without VNNI (see unsigned_weights).
        unsigned_weights(model)
        _rename(model.graph, "embedding", "image_embeddings")
        with atomic_path(path) as staged:
            onnx.save(model, str(staged))
    meta = art.meta
    calibration = meta.get("calibration", {})
    return {
        "inputs": ["image"], "outputs": ["image_embeddings"],
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "runtime": "ONNX Runtime (static int8 QDQ; com.microsoft kernels)",
        "quantization": meta.get("quantization", {}).get("encoder"),
        "calibration_images": calibration.get("images"), "calibration_source": meta.get("source"),
        "quality": meta.get("quality"), "weights": "uint8, zero point 128",
    }


def _rename(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in graph.output:
        if value.name == old:
            value.name = new


def sam_onnx_config(sam: Sam, return_single_mask: bool = True, source: str | None = None) -> dict[str, Any]:
    """What ``config.json`` records (without the per-file entries)."""


    h, w = sam.prompt_encoder.image_embedding_size
    mh, mw = sam.prompt_encoder.mask_input_size
    return {
        "format": "segment-anything-onnx",
        "producer": f"pocketsam {__version__}",
        "model_type": model_type_name(sam),
        "checkpoint": source,
        "weights_sha256": weights_sha256(sam),
        "input_size": int(sam.img_size),
        "embedding_shape": [1, int(sam.prompt_encoder.embed_dim), int(h), int(w)],
        "low_res_mask_size": [int(mh), int(mw)],
        "image_format": "RGB",
        "pixel_mean": [round(float(v), 5) for v in sam.pixel_mean.flatten()],
        "pixel_std": [round(float(v), 5) for v in sam.pixel_std.flatten()],
        "resize": "long side to input_size (bilinear, antialiased), normalise, zero-pad bottom/right",
        "mask_threshold": float(sam.mask_threshold),
        "multimask_only": sam.config.decoder.multimask_only,
        "return_single_mask": bool(return_single_mask),
        "opset": OPSET,
        "everything_defaults": dict(sam.everything_defaults),
    }


def export_sam_onnx(
    sam: Sam,
    out_dir: str | Path,
    parts: Iterable[str] = DEFAULT_PARTS,
    return_single_mask: bool = True,
    source: str | None = None,
    calib_images: list | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Write the chosen ``parts`` (``decoder``, ``encoder``, ``encoder_rgb``, ``encoder_int8``
    calibrated on ``calib_images`` when given) and
    ``config.json`` into ``out_dir`` (created if needed). Each file is written to a
    temporary name and renamed; ``config.json`` comes last and lists the files with their
    SHA-256, so a folder with a config is complete.

    Returns:
        the configuration written.
    Raises:
        InputError: ``out_dir`` is a file, or an unknown part.
    """

    parts = list(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise InputError(f"unknown ONNX part(s) {', '.join(unknown)}", f"use {', '.join(PARTS)}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output '{out}' exists and is not a directory", "give a directory for --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output directory '{out}': {exc.strerror or exc}", "choose another --out") from None
    sam = sam.eval()
    config = sam_onnx_config(sam, return_single_mask, source)
    files: dict[str, Any] = {}
    for part in parts:
        path = out / FILES[part]
        if part == "decoder":
            export_decoder(sam, path, return_single_mask)
            files[part] = {"file": path.name, "inputs": list(DECODER_INPUTS), "outputs": list(DECODER_OUTPUTS)}
        elif part == "encoder":
            export_encoder(sam, path)
            files[part] = {"file": path.name, "inputs": ["image"], "outputs": ["image_embeddings"]}
        elif part == "encoder_rgb":
            export_encoder_rgb(sam, path)
            files[part] = {"file": path.name, "inputs": ["input_image"], "outputs": ["image_embeddings"],
                           "opset": RGB_OPSET}
        else:
            files[part] = {"file": path.name, **export_encoder_int8(sam, path, calib_images, log)}
        files[part]["sha256"] = sha256_file(path)
        files[part]["bytes"] = path.stat().st_size
    config["files"] = files
    write_json_atomic(config, out / "config.json")
    return config


def read_config(out_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of an export folder."""

    return read_json(Path(out_dir) / "config.json", "ONNX export config")


__all__ = [
    "DECODER_INPUTS", "DECODER_OUTPUTS", "SamOnnxDecoder", "export_decoder", "export_encoder",
    "export_encoder_int8", "export_encoder_rgb", "export_sam_onnx", "model_type_name", "preprocess_graph", "read_config",
    "sam_onnx_config",
]
