"""Official checkpoint layouts, and architecture detection from keys and shapes."""

from __future__ import annotations

import pytest
import torch

from pocketsam.checkpoints import config_from_state_dict, export_state_dict, read_checkpoint
from pocketsam.models import MODEL_CONFIGS, DecoderConfig, SamConfig, TinyViTConfig, ViTConfig, create_model

from conftest import FIXTURES, tiny_config


def meta_model(config):
    with torch.device("meta"):
        return create_model(config)


@pytest.mark.parametrize("model_type", ["vit_t", "vit_b", "vit_l", "vit_h"])
def test_official_layout_keys_and_shapes(official_shapes, model_type):
    reference = official_shapes[model_type]
    state = meta_model(model_type).state_dict()
    assert list(state) == list(reference)  # same keys, same order
    assert {k: list(v.shape) for k, v in state.items()} == reference


@pytest.mark.parametrize("model_type", ["vit_t", "vit_b", "vit_l", "vit_h"])
def test_detects_official_configs(model_type):
    state = meta_model(model_type).state_dict()
    assert config_from_state_dict(state) == MODEL_CONFIGS[model_type]


def test_detects_small_vit_from_tensors_alone(vit_small_checkpoint):
    state, meta = read_checkpoint(vit_small_checkpoint)
    assert meta == {}
    enc = config_from_state_dict(state).encoder
    assert isinstance(enc, ViTConfig)
    assert (enc.embed_dim, enc.depth, enc.num_heads, enc.window_size) == (192, 2, 3, 14)
    assert enc.global_attn_indexes == (1,)
    assert (enc.patch_size, enc.img_size, enc.out_chans, enc.use_rel_pos) == (16, 1024, 256, True)


def test_detects_reduced_layouts_from_tensors_alone():
    """The in-repo golden checkpoints (tests/fixtures/README.md): a reduced SAM ViT at 256²
    and a reduced TinyViT, recovered from keys and shapes alone."""
    state, meta = read_checkpoint(FIXTURES / "vit_tiny.pt")
    assert meta == {}
    enc = config_from_state_dict(state).encoder
    assert isinstance(enc, ViTConfig)
    assert (enc.embed_dim, enc.depth, enc.num_heads, enc.window_size, enc.global_attn_indexes) == (32, 2, 2, 5, (1,))
    assert (enc.patch_size, enc.img_size, enc.out_chans, enc.use_rel_pos) == (16, 256, 32, True)
    state, _ = read_checkpoint(FIXTURES / "vit_t_tiny.pt")
    config = config_from_state_dict(state)
    assert (config.encoder.embed_dims, config.encoder.depths) == ((16, 32, 48, 320), (1, 1, 2, 1))
    # stage 0 is convolutional: its heads and window are not in the weights (nor used)
    assert (config.encoder.num_heads[1:], config.encoder.window_sizes[1:]) == ((2, 3, 5), (7, 14, 7))
    assert (config.encoder.mlp_ratio, config.prompt_embed_dim) == (1.0, 32)


VARIANTS = [
    tiny_config(256),
    tiny_config(512),
    SamConfig(TinyViTConfig(embed_dims=(32, 64, 96, 128), depths=(1, 3, 2, 1), num_heads=(1, 2, 3, 4),
                            window_sizes=(7, 7, 7, 14), mlp_ratio=2.0, num_classes=0, out_chans=64),
              prompt_embed_dim=64),
    SamConfig(ViTConfig(img_size=512, embed_dim=96, depth=3, num_heads=2, window_size=8,
                        global_attn_indexes=(0, 2), mlp_ratio=2.0, out_chans=64),
              DecoderConfig(transformer_num_heads=4, transformer_mlp_dim=128, multimask_only=True),
              prompt_embed_dim=64),
    SamConfig(ViTConfig(img_size=256, embed_dim=64, depth=2, num_heads=4, use_rel_pos=False,
                        window_size=4, global_attn_indexes=(1,), out_chans=32),
              DecoderConfig(transformer_mlp_dim=64), prompt_embed_dim=32),
]


@pytest.mark.parametrize("config", VARIANTS, ids=range(len(VARIANTS)))
def test_export_then_detect_roundtrip(config):
    state = export_state_dict(create_model(config))
    from pocketsam.checkpoints import META_PREFIX

    meta = {k[len(META_PREFIX):]: int(v.item()) for k, v in state.items() if k.startswith(META_PREFIX)}
    tensors = {k: v for k, v in state.items() if not k.startswith(META_PREFIX)}
    assert config_from_state_dict(tensors, meta) == config


def test_standard_configs_need_no_metadata():
    for name in ("vit_t", "vit_b"):
        state = export_state_dict(create_model(name))
        assert not any(k.startswith("pocketsam.") for k in state)


def test_variant_shapes_run(tiny_sam):
    """A non-standard size runs end to end with the right output shapes."""
    x = torch.rand(1, 3, 256, 256) * 255
    emb = tiny_sam.image_encoder(tiny_sam.preprocess(x))
    assert tuple(emb.shape) == (1, 32, 16, 16)
