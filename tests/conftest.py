"""Shared fixtures. The golden data lives in ../shared/golden beside the checkout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden"
PHOTOS = SHARED / "photos"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    assert (GOLDEN / "cases.npz").exists(), f"golden data not found at {GOLDEN} (CI puts ../shared beside the checkout)"
    return GOLDEN


@pytest.fixture(scope="session")
def golden_cases(golden_dir):
    return np.load(golden_dir / "cases.npz")


@pytest.fixture(scope="session")
def vit_t_checkpoint(golden_dir) -> Path:
    return golden_dir / "vit_t_random.pt"


@pytest.fixture(scope="session")
def vit_small_checkpoint(golden_dir) -> Path:
    return golden_dir / "vit_small_random.pt"


def tiny_config(img_size: int = 256):
    """A very small TinyViT SAM for fast tests (seeded random weights)."""
    from pocketsam.models import DecoderConfig, SamConfig, TinyViTConfig

    return SamConfig(
        TinyViTConfig(img_size=img_size, embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1),
                      num_heads=(1, 2, 2, 2), window_sizes=(7, 7, 7, 7), num_classes=0, out_chans=32),
        DecoderConfig(transformer_depth=1, transformer_mlp_dim=64),
        prompt_embed_dim=32,
    )


@pytest.fixture()
def tiny_sam():
    from pocketsam.models import create_model

    torch.manual_seed(0)
    return create_model(tiny_config()).eval()


@pytest.fixture(scope="session")
def golden_int8_artifact(tmp_path_factory, vit_t_checkpoint) -> Path:
    """The golden vit_t weights quantised by `pocketsam.quant` (default settings) with one
    photo of ../shared/photos as calibration; made once per test session (~30 s)."""
    pytest.importorskip("onnxruntime")
    from pocketsam import build_sam
    from pocketsam.io import load_image
    from pocketsam.quant import quantize_model

    out = tmp_path_factory.mktemp("int8") / "vit_t_int8"
    quantize_model(build_sam(checkpoint=vit_t_checkpoint), [load_image(PHOTOS / "street.jpg")], out, measure=0)
    return out
