"""Architecture detection: every hyper-parameter of a model from its tensors' names and shapes
(plus the few hints recorded as metadata), the safety limits a described model must respect,
and strict checks that a state_dict fits a model."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from functools import lru_cache
from typing import Mapping

import torch

from pocketsam.checkpoints.read import OFFICIAL_TYPES, short_reason
from pocketsam.errors import CheckpointError
from pocketsam.models.registry import (
    MODEL_CONFIGS,
    DecoderConfig,
    SamConfig,
    TinyViTConfig,
    ViTConfig,
    create_model,
)
from pocketsam.models.sam import Sam


# ------------------------------------------------------------------------- detection
def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def config_from_state_dict(sd: Mapping[str, torch.Tensor], meta: Mapping[str, int] | None = None) -> SamConfig:
    """Recover the full :class:`SamConfig` from tensor names and shapes.

    Raises:
        CheckpointError: the tensors are not a SAM-family layout.
    """
    meta = dict(meta or {})
    try:
        if "image_encoder.patch_embed.proj.weight" in sd:
            encoder = _vit_config(sd, meta)
        elif "image_encoder.patch_embed.seq.0.c.weight" in sd:
            encoder = _tiny_vit_config(sd, meta)
        else:
            raise KeyError("image_encoder")
        config = SamConfig(encoder=encoder, decoder=_decoder_config(sd, meta),
                           prompt_embed_dim=sd["prompt_encoder.no_mask_embed.weight"].shape[1])
    except KeyError as exc:
        sample = ", ".join(list(sd)[:3])
        raise CheckpointError(
            f"this is not a SAM-family checkpoint: no '{exc.args[0]}' tensors (keys start: {sample})",
            "pass a SAM / MobileSAM / TinySAM checkpoint or one exported by pocketsam",
        ) from None
    except (IndexError, ValueError, TypeError, ZeroDivisionError) as exc:  # a tensor of the wrong rank or size
        raise CheckpointError(
            f"this is not a SAM-family checkpoint: its tensor shapes do not describe a model ({short_reason(exc)})",
            "pass a SAM / MobileSAM / TinySAM checkpoint or one exported by pocketsam",
        ) from None
    check_architecture(config)
    return config


def _vit_config(sd: Mapping[str, torch.Tensor], meta: Mapping[str, int]) -> ViTConfig:
    p = "image_encoder."
    embed_dim, _, patch, _ = sd[p + "patch_embed.proj.weight"].shape
    depth = _count(sd, r"image_encoder\.blocks\.(\d+)\.")
    use_abs_pos = p + "pos_embed" in sd
    grid = sd[p + "pos_embed"].shape[1] if use_abs_pos else meta.get("img_size", 1024) // patch
    use_rel_pos = p + "blocks.0.attn.rel_pos_h" in sd
    window, global_idx, num_heads = 0, [], meta.get("vit_num_heads", max(1, embed_dim // 64))
    if use_rel_pos:
        num_heads = embed_dim // sd[p + "blocks.0.attn.rel_pos_h"].shape[1]
        for i in range(depth):
            n = (sd[p + f"blocks.{i}.attn.rel_pos_h"].shape[0] + 1) // 2
            if n == grid:
                global_idx.append(i)
            else:
                window = n
        if not window:  # every block global: any window size is equivalent
            global_idx = list(range(depth))
    else:
        window = meta.get("window_size", 14)
        global_idx = [i for i in range(depth) if meta.get(f"global_{i}", 0)]
    return ViTConfig(
        img_size=grid * patch,
        patch_size=patch,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=sd[p + "blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        window_size=window,
        global_attn_indexes=tuple(global_idx),
        qkv_bias=p + "blocks.0.attn.qkv.bias" in sd,
        use_abs_pos=use_abs_pos,
        use_rel_pos=use_rel_pos,
        out_chans=sd[p + "neck.0.weight"].shape[0],
    )


def _tiny_vit_config(sd: Mapping[str, torch.Tensor], meta: Mapping[str, int]) -> TinyViTConfig:
    p = "image_encoder."
    n_layers = _count(sd, r"image_encoder\.layers\.(\d+)\.")
    dims, depths, heads, windows = [], [], [], []
    default = TinyViTConfig()
    for i in range(n_layers):
        n_blocks = _count(sd, rf"image_encoder\.layers\.{i}\.blocks\.(\d+)\.")
        depths.append(n_blocks)
        if i == 0:
            dims.append(sd[p + "layers.0.blocks.0.conv1.c.weight"].shape[1])
            heads.append(meta.get("layer0_heads", default.num_heads[0]))
            windows.append(meta.get("layer0_window", default.window_sizes[0]))
        else:
            bias = sd[p + f"layers.{i}.blocks.0.attn.attention_biases"]
            dims.append(sd[p + f"layers.{i}.blocks.0.attn.norm.weight"].shape[0])
            heads.append(bias.shape[0])
            windows.append(math.isqrt(bias.shape[1]))
    num_classes = sd[p + "head.weight"].shape[0] if p + "head.weight" in sd else 0
    mlp_key = p + "layers.1.blocks.0.mlp.fc1.weight"
    return TinyViTConfig(
        img_size=meta.get("img_size", 1024),
        embed_dims=tuple(dims),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=sd[mlp_key].shape[0] / dims[1] if mlp_key in sd else default.mlp_ratio,
        mbconv_expand_ratio=sd[p + "layers.0.blocks.0.conv1.c.weight"].shape[0] / dims[0],
        local_conv_size=sd[p + "layers.1.blocks.0.local_conv.c.weight"].shape[-1]
        if p + "layers.1.blocks.0.local_conv.c.weight" in sd else default.local_conv_size,
        num_classes=num_classes,
        out_chans=sd[p + "neck.0.weight"].shape[0],
        neck_kernel_size=sd[p + "neck.2.weight"].shape[-1],
    )


def _decoder_config(sd: Mapping[str, torch.Tensor], meta: Mapping[str, int]) -> DecoderConfig:
    t = "mask_decoder.transformer."
    dim = sd["mask_decoder.iou_token.weight"].shape[1]
    return DecoderConfig(
        transformer_depth=_count(sd, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        transformer_mlp_dim=sd[t + "layers.0.mlp.lin1.weight"].shape[0],
        transformer_num_heads=meta.get("transformer_num_heads", 8),
        attention_downsample_rate=dim // sd[t + "final_attn_token_to_image.q_proj.weight"].shape[0],
        num_multimask_outputs=sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        iou_head_depth=_count(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        iou_head_hidden_dim=sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        mask_in_chans=sd["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        multimask_only=bool(meta.get("multimask_only", 0)),
    )


def config_metadata(config: SamConfig) -> dict[str, int]:
    """The ``pocketsam.*`` metadata needed to rebuild ``config`` from its tensors."""
    meta: dict[str, int] = {}
    enc, dec = config.encoder, config.decoder
    if isinstance(enc, TinyViTConfig):
        default = TinyViTConfig()
        if enc.img_size != 1024:
            meta["img_size"] = enc.img_size
        # stage 0 is convolutional: its heads/window change nothing but are kept for a faithful config
        if enc.num_heads[0] != default.num_heads[0]:
            meta["layer0_heads"] = enc.num_heads[0]
        if enc.window_sizes[0] != default.window_sizes[0]:
            meta["layer0_window"] = enc.window_sizes[0]
    elif not enc.use_rel_pos:
        meta["vit_num_heads"] = enc.num_heads
        meta["window_size"] = enc.window_size
        meta.update({f"global_{i}": 1 for i in enc.global_attn_indexes})
        if not enc.use_abs_pos:
            meta["img_size"] = enc.img_size
    if dec.transformer_num_heads != 8:
        meta["transformer_num_heads"] = dec.transformer_num_heads
    if dec.multimask_only:
        meta["multimask_only"] = 1
    return meta



# --------------------------------------------------------------------------- limits
#: Bounds on an architecture read from a file, checked before anything is allocated
#: (:func:`check_architecture`): several times what every official SAM / MobileSAM /
#: TinySAM checkpoint and pocketsam preset uses (in brackets), so that a crafted file
#: cannot make loading allocate or compute without bound.
ARCHITECTURE_LIMITS: dict[str, int] = {
    "img_size": 4096,  # input side (1024)
    "width": 8192,  # any embedding / channel width (vit_h: 1280)
    "depth": 256,  # blocks of a ViT or of one TinyViT stage (vit_h: 32)
    "stages": 16,  # TinyViT stages (4)
    "heads": 256,  # attention heads (16)
    "mlp": 65536,  # hidden width of any MLP (vit_h: 5120; the decoder's 2048)
    "window": 64,  # attention window side (14)
    "patch": 64,  # ViT patch side (16)
    "kernel": 15,  # convolution kernel side (3)
    "decoder_depth": 64,  # two-way transformer layers, IoU-head layers (2, 3)
    "outputs": 16,  # multimask outputs (3)
    "classes": 100_000,  # TinyViT's unused ImageNet head (1000)
    "parameters": 4_000_000_000,  # vit_h: 641 million
    "unbacked": 64 * 2**20,  # values of buffers the file does not hold (TinyViT's bias indices)
}


def check_architecture(config: SamConfig, source: str = "the checkpoint") -> None:
    """Refuse a configuration beyond :data:`ARCHITECTURE_LIMITS` or inconsistent with itself
    (e.g. heads that do not divide the width), before any model is built.

    Raises:
        CheckpointError: naming the first setting out of bounds.
    """
    L = ARCHITECTURE_LIMITS

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CheckpointError(
                f"{source} describes an unsupported architecture: {what}",
                "it is damaged or crafted; use a SAM / MobileSAM / TinySAM checkpoint or one exported by pocketsam",
            )

    def within(name: str, value: object, low: int, high: int, integer: bool = True) -> None:
        ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        need(ok and low <= value <= high, f"{name} = {value!r} (supported: {low} to {high:,})")

    enc, dec = config.encoder, config.decoder
    within("input size", enc.img_size, 64, L["img_size"])
    within("prompt_embed_dim", config.prompt_embed_dim, 2, L["width"])
    need(enc.out_chans == config.prompt_embed_dim,
         f"encoder output width {enc.out_chans} differs from the prompt embedding width {config.prompt_embed_dim}")
    if isinstance(enc, ViTConfig):
        within("patch size", enc.patch_size, 1, L["patch"])
        need(enc.img_size % enc.patch_size == 0, f"input size {enc.img_size} is not a multiple of patch size {enc.patch_size}")
        within("embed_dim", enc.embed_dim, 1, L["width"])
        within("depth", enc.depth, 1, L["depth"])
        within("num_heads", enc.num_heads, 1, L["heads"])
        need(enc.embed_dim % enc.num_heads == 0, f"{enc.num_heads} heads do not divide embed_dim {enc.embed_dim}")
        within("MLP width", enc.mlp_ratio * enc.embed_dim, 1, L["mlp"], integer=False)
        within("window_size", enc.window_size, 0, L["window"])
        need(all(0 <= i < enc.depth for i in enc.global_attn_indexes), "global attention blocks beyond the depth")
    else:
        n = len(enc.embed_dims)
        within("number of stages", n, 2, L["stages"])
        need(len(enc.depths) == len(enc.num_heads) == len(enc.window_sizes) == n, "per-stage settings of unequal length")
        for i in range(n):
            within(f"stage {i} width", enc.embed_dims[i], 1, L["width"])
            within(f"stage {i} depth", enc.depths[i], 1, L["depth"])
            within(f"stage {i} heads", enc.num_heads[i], 1, L["heads"])
            within(f"stage {i} window", enc.window_sizes[i], 1, L["window"])
            if i:
                need(enc.embed_dims[i] % enc.num_heads[i] == 0,
                     f"stage {i}: {enc.num_heads[i]} heads do not divide width {enc.embed_dims[i]}")
                within(f"stage {i} MLP width", enc.mlp_ratio * enc.embed_dims[i], 1, L["mlp"], integer=False)
        within("MBConv width", enc.mbconv_expand_ratio * enc.embed_dims[0], 1, L["mlp"], integer=False)
        within("local_conv_size", enc.local_conv_size, 1, L["kernel"])
        within("neck kernel size", enc.neck_kernel_size, 1, L["kernel"])
        within("num_classes", enc.num_classes, 0, L["classes"])
        need(enc.img_size % 64 == 0, f"input size {enc.img_size} is not a multiple of 64")
    within("encoder out_chans", enc.out_chans, 2, L["width"])
    within("decoder depth", dec.transformer_depth, 0, L["decoder_depth"])
    within("decoder MLP width", dec.transformer_mlp_dim, 1, L["mlp"])
    within("decoder heads", dec.transformer_num_heads, 1, L["heads"])
    within("attention downsample rate", dec.attention_downsample_rate, 1, config.prompt_embed_dim)
    inner = config.prompt_embed_dim // dec.attention_downsample_rate
    need(config.prompt_embed_dim % dec.attention_downsample_rate == 0 and inner % dec.transformer_num_heads == 0,
         f"{dec.transformer_num_heads} decoder heads do not divide the attention width {inner}")
    within("multimask outputs", dec.num_multimask_outputs, 1, L["outputs"])
    within("IoU head depth", dec.iou_head_depth, 1, L["decoder_depth"])
    within("IoU head width", dec.iou_head_hidden_dim, 1, L["width"])
    within("mask input channels", dec.mask_in_chans, 4, L["width"])


def _meta_model(config: SamConfig, source: str) -> Sam:
    """``config`` built on the meta device: every shape, nothing allocated."""
    try:
        with torch.device("meta"):
            model = create_model(config)
    except (AssertionError, ValueError, RuntimeError, TypeError, ZeroDivisionError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint '{source}' describes an inconsistent architecture ({short_reason(exc)})",
            "it is damaged or crafted; use a SAM / MobileSAM / TinySAM checkpoint or one exported by pocketsam",
        ) from None
    backed = sum(v.numel() for v in model.state_dict().values())
    total = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    if backed > ARCHITECTURE_LIMITS["parameters"] or total - backed > ARCHITECTURE_LIMITS["unbacked"]:
        raise CheckpointError(
            f"checkpoint '{source}' describes a model of {total:,} values, beyond the supported "
            f"{ARCHITECTURE_LIMITS['parameters']:,}", "use a SAM / MobileSAM / TinySAM checkpoint",
        )
    return model


def reference_type(config: SamConfig) -> str | None:
    """The official architecture (``vit_h``, ``vit_l``, ``vit_b``, ``vit_t``) whose reference
    code builds exactly ``config`` (TinySAM's decoder behaviour aside: TinySAM's code builds
    ``vit_t``), else None."""
    plain = replace(config, decoder=replace(config.decoder, multimask_only=False))
    return next((t for t in OFFICIAL_TYPES if MODEL_CONFIGS[t] == plain), None)




@lru_cache(maxsize=None)
def _official_signature(model_type: str) -> frozenset[tuple[str, tuple[int, ...]]]:
    with torch.device("meta"):
        model = create_model(model_type)
    return frozenset((k, tuple(v.shape)) for k, v in model.state_dict().items())


def closest_model_type(sd: Mapping[str, torch.Tensor]) -> tuple[str, float]:
    """The official layout whose (key, shape) set overlaps ``sd`` most, and the Jaccard score."""
    sig = frozenset((k, tuple(v.shape)) for k, v in sd.items())
    scores = {t: len(sig & _official_signature(t)) / max(1, len(sig | _official_signature(t))) for t in OFFICIAL_TYPES}
    best = max(scores, key=scores.get)
    return best, scores[best]


def _examples(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (", …" if len(keys) > n else "")


def load_into(model: Sam, sd: Mapping[str, torch.Tensor], source: str, model_type: str | None = None) -> None:
    """Strictly load ``sd`` into ``model``; any mismatch is one clear CheckpointError."""
    expected = model.state_dict()
    check_fits(expected, sd, source, model_type)
    check_finite(sd, source)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=True)


def check_fits(expected: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], source: str,
               model_type: str | None = None) -> None:
    """``sd`` has exactly the keys and shapes of ``expected`` (a model's state_dict, which
    may live on the meta device); else one clear CheckpointError."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_examples(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_examples(unexpected)})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: checkpoint {list(sd[k].shape)} vs model {list(expected[k].shape)})"
            )
        closest, score = closest_model_type(sd)
        what = f"model type '{model_type}'" if model_type else "the detected architecture"
        raise CheckpointError(
            f"checkpoint '{source}' does not fit {what}: " + "; ".join(parts)
            + f". It most resembles '{closest}' ({score:.0%} of keys and shapes match)",
            "pass the matching --model-type / model_type, or model_type=None to detect it from the file",
        )


def check_finite(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Every floating-point tensor must be finite: one NaN/inf weight makes every score and
    mask of the model NaN (or empty).

    Raises:
        CheckpointError: naming the first tensors that hold NaN or inf, with the count.
    """
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"checkpoint '{source}' holds NaN or infinite values in {len(bad)} tensor(s) ({_examples(bad)})",
            "the file is damaged or comes from a diverged training run; use another checkpoint",
        )


