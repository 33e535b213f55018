"""Named model configurations and the one builder, :func:`create_model`.

A :class:`SamConfig` says everything needed to build a model; official layouts are
entries of :data:`MODEL_CONFIGS`. Configs are plain frozen dataclasses, so a smaller or
larger variant is ``dataclasses.replace(MODEL_CONFIGS["vit_t"], ...)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Union

from pocketsam.models.image_encoder_vit import ImageEncoderViT
from pocketsam.models.mask_decoder import MaskDecoder
from pocketsam.models.prompt_encoder import PromptEncoder
from pocketsam.models.sam import Sam
from pocketsam.models.tiny_vit import TinyViT
from pocketsam.models.transformer import TwoWayTransformer


@dataclass(frozen=True)
class ViTConfig:
    """SAM's ViT encoder (``vit_b``/``vit_l``/``vit_h`` and variants)."""

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    out_chans: int = 256

    def build(self) -> ImageEncoderViT:
        return ImageEncoderViT(**asdict(self))


@dataclass(frozen=True)
class TinyViTConfig:
    """TinyViT encoder (``vit_t`` = MobileSAM / TinySAM, and variants)."""

    img_size: int = 1024
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    num_classes: int = 1000
    out_chans: int = 256
    neck_kernel_size: int = 3

    def build(self) -> TinyViT:
        return TinyViT(**asdict(self))


EncoderConfig = Union[ViTConfig, TinyViTConfig]


@dataclass(frozen=True)
class DecoderConfig:
    """Prompt encoder + mask decoder hyper-parameters (shared by every SAM variant)."""

    transformer_depth: int = 2
    transformer_mlp_dim: int = 2048
    transformer_num_heads: int = 8
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    multimask_only: bool = False  # TinySAM: single-mask requests pick the best multimask output


@dataclass(frozen=True)
class SamConfig:
    encoder: EncoderConfig
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    prompt_embed_dim: int = 256

    @property
    def img_size(self) -> int:
        return self.encoder.img_size

    @property
    def family(self) -> str:
        return "vit" if isinstance(self.encoder, ViTConfig) else "tiny_vit"

    def with_img_size(self, img_size: int) -> "SamConfig":
        """This configuration at another input size (every other field unchanged)."""
        return replace(self, encoder=replace(self.encoder, img_size=img_size))


_MOBILE = SamConfig(TinyViTConfig())
MODEL_CONFIGS: dict[str, SamConfig] = {
    "vit_h": SamConfig(ViTConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31))),
    "vit_l": SamConfig(ViTConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23))),
    "vit_b": SamConfig(ViTConfig()),
    "vit_t": _MOBILE,
    "mobile_sam": _MOBILE,
    "tinysam": SamConfig(TinyViTConfig(), DecoderConfig(multimask_only=True)),
    # pocketsam's own bundled model: a slim TinyViT at 256² with SAM's standard decoder,
    # small enough to train on a laptop CPU (see README, "The bundled model").
    "pocketsam_tiny": SamConfig(
        TinyViTConfig(img_size=256, embed_dims=(32, 64, 128, 160), depths=(1, 2, 2, 1),
                      num_heads=(1, 2, 4, 5), window_sizes=(7, 8, 8, 8), num_classes=0)
    ),
    # A distillation student below pocketsam_tiny: 22 % of its encoder FLOPs at 256²
    # (0.24 vs 1.09 GFLOP). At a 16×16 embedding grid the neck's 3×3 256→256 convolution
    # alone costs 0.30 GFLOP, so the nano neck uses a 1×1 one.
    "pocketsam_nano": SamConfig(
        TinyViTConfig(img_size=256, embed_dims=(16, 32, 64, 96), depths=(1, 1, 2, 1),
                      num_heads=(1, 1, 2, 3), window_sizes=(7, 8, 8, 8), num_classes=0, neck_kernel_size=1)
    ),
}
"""Official layouts. ``mobile_sam`` is an alias of ``vit_t``; ``tinysam`` is the same
layout with TinySAM's multimask-only decoder behaviour."""


def create_model(config: SamConfig | str) -> Sam:
    """Build a randomly initialised :class:`Sam` from a config or a registered name."""
    if isinstance(config, str):
        config = MODEL_CONFIGS[config]
    dec = config.decoder
    dim = config.prompt_embed_dim
    if config.encoder.out_chans != dim:
        raise ValueError(f"encoder out_chans ({config.encoder.out_chans}) must equal prompt_embed_dim ({dim})")
    grid = config.img_size // 16
    model = Sam(
        image_encoder=config.encoder.build(),
        prompt_encoder=PromptEncoder(dim, (grid, grid), (config.img_size, config.img_size), dec.mask_in_chans),
        mask_decoder=MaskDecoder(
            dim,
            TwoWayTransformer(
                dec.transformer_depth, dim, dec.transformer_num_heads,
                dec.transformer_mlp_dim, dec.attention_downsample_rate,
            ),
            num_multimask_outputs=dec.num_multimask_outputs,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
            multimask_only=dec.multimask_only,
        ),
    )
    model.config = config
    return model
