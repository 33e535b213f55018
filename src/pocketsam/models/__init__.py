"""Model definitions (plain ``nn.Module``s: no file I/O, training or CLI logic here)."""

from pocketsam.models.registry import (
    MODEL_CONFIGS,
    DecoderConfig,
    SamConfig,
    TinyViTConfig,
    ViTConfig,
    create_model,
)
from pocketsam.models.sam import Sam

__all__ = ["MODEL_CONFIGS", "DecoderConfig", "Sam", "SamConfig", "TinyViTConfig", "ViTConfig", "create_model"]
