"""Building a model from a float checkpoint (path, official name or the bundled model), and
loading a checkpoint into an existing model. int8 artifacts are understood one layer up
(:func:`pocketsam.runtime.load.build_sam`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping

import torch

from pocketsam.checkpoints.detect import (
    ARCHITECTURE_LIMITS,
    _meta_model,
    check_finite,
    check_fits,
    config_from_state_dict,
    load_into,
)
from pocketsam.checkpoints.read import (
    HEAD_PREFIX,
    Metadata,
    StateDict,
    _unwrap,
    multimask_only_by_name,
    read_checkpoint,
)
from pocketsam.errors import CheckpointError, InputError
from pocketsam.models.info import ModelInfo
from pocketsam.models.proposal_head import ProposalHead
from pocketsam.models.registry import (
    MODEL_CONFIGS,
    SamConfig,
    TinyViTConfig,
    create_model,
)
from pocketsam.models.sam import Sam
from pocketsam.thresholds import everything_defaults
from pocketsam.weights import default_checkpoint, resolve_checkpoint_name



# -------------------------------------------------------------------------- building
def _resolve_type(model_type: str | None) -> str | None:
    if model_type is None:
        return None
    key = model_type.lower().replace("-", "_")
    if key not in MODEL_CONFIGS:
        raise CheckpointError(
            f"unknown model type '{model_type}'",
            f"use one of {', '.join(MODEL_CONFIGS)} or leave it out to detect it from the checkpoint",
        )
    return key


def build_model(
    model_type: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    img_size: int | None = None,
) -> Sam:
    """Build a SAM-family model from a float checkpoint, in eval mode (int8 artifacts:
    :func:`pocketsam.build_sam`, one layer up, which calls this).

    Args:
        model_type: ``vit_h``, ``vit_l``, ``vit_b``, ``vit_t``, ``mobile_sam`` or ``tinysam``;
            ``None`` reads the architecture and hyper-parameters from the checkpoint (a
            file whose name starts with ``tinysam`` then gets TinySAM's decoder behaviour).
        checkpoint: state_dict file (.pth/.pt/.safetensors), an official name
            (``"mobile_sam"``, from the weights folder) or ``"bundled"``.
            ``None`` with a model_type gives random weights; with neither, the bundled model.
        device: where to put the model (default CPU).
        img_size: run a TinyViT-encoder model at another input size (a multiple of 64).
            Its weights do not depend on the input size, so this is how a model is
            fine-tuned at a higher resolution (``pocketsam train --init CKPT --img-size N``).
    """
    key = _resolve_type(model_type)
    if checkpoint is None and key is None:
        checkpoint = default_checkpoint()
    if checkpoint is None:
        model = create_model(_resized(MODEL_CONFIGS[key], img_size))
    else:
        checkpoint = resolve_checkpoint_name(checkpoint)  # "mobile_sam": the downloaded official file
        sd, meta = read_checkpoint(checkpoint)
        sd, head = _split_head(sd)
        if key is None:
            config = config_from_state_dict(sd, meta)
            if multimask_only_by_name(checkpoint):
                config = replace(config, decoder=replace(config.decoder, multimask_only=True))
        else:
            config = MODEL_CONFIGS[key]
        config = _resized(config, img_size)
        # the file must hold every weight of the model before any is allocated
        check_fits(_meta_model(config, str(checkpoint)).state_dict(), sd, str(checkpoint), key)
        model = create_model(config)
        _load(model, sd, head, meta, str(checkpoint), key)
        model.info = ModelInfo(source=str(checkpoint))
    model.eval()
    if device is not None:
        model.to(device)
    return model


def load_state_dict(model: Sam, checkpoint: str | Path | Mapping[str, torch.Tensor]) -> Sam:
    """Load a checkpoint strictly into an existing ``model``: segment_anything's
    ``model.load_state_dict(torch.load(f), strict=True)`` that also understands pocketsam's
    own files. Metadata (the safetensors header, ``pocketsam.*`` tensors) is not loaded as
    weights: the configuration it records, with the tensor shapes, must be ``model``'s
    (the input size of a TinyViT model aside, which weights do not depend on);
    recommended thresholds become ``model.everything_defaults``, and a stored
    ``proposal_head.*`` becomes ``model.proposal_head``.

    Args:
        checkpoint: a file (as :func:`build_sam` takes it) or a state_dict as ``torch.load``
            returns it.
    Returns:
        ``model``, for chaining.
    Raises:
        CheckpointError: any missing, unexpected or misshapen weight, or another configuration.
    """
    if isinstance(checkpoint, Mapping):
        source = "the state_dict"
        sd, meta = _unwrap(checkpoint, Path(source))
    else:
        checkpoint = resolve_checkpoint_name(checkpoint)
        source = str(checkpoint)
        sd, meta = read_checkpoint(checkpoint)
    sd, head = _split_head(sd)
    check_fits(model.state_dict(), sd, source)
    mine, theirs = model.config, config_from_state_dict(sd, meta)
    if isinstance(mine.encoder, TinyViTConfig):
        theirs = theirs.with_img_size(mine.img_size)
    if not theirs.decoder.multimask_only:  # not recorded: TinySAM's official .pth cannot record it
        theirs = replace(theirs, decoder=replace(theirs.decoder, multimask_only=mine.decoder.multimask_only))
    if theirs != mine:
        raise CheckpointError(
            f"checkpoint '{source}' fits the model's tensors but records another configuration "
            f"({_first_difference(theirs, mine)})",
            "build the model from the file instead: build_sam(checkpoint=...)",
        )
    _load(model, sd, head, meta, source)
    return model


def _first_difference(theirs: object, mine: object, where: str = "") -> str:
    """``field: checkpoint X vs model Y`` for the first field in which two configs differ."""
    from dataclasses import fields, is_dataclass

    if is_dataclass(theirs) and type(theirs) is type(mine):
        for f in fields(theirs):
            a, b = getattr(theirs, f.name), getattr(mine, f.name)
            if a != b:
                return _first_difference(a, b, f"{where}{f.name}.")
    return f"{where.rstrip('.') or 'config'}: checkpoint {theirs!r} vs model {mine!r}"


def _split_head(sd: StateDict) -> tuple[StateDict, StateDict]:
    """A state_dict's model weights and its proposal head's (without :data:`HEAD_PREFIX`)."""
    head = {k[len(HEAD_PREFIX):]: v for k, v in sd.items() if k.startswith(HEAD_PREFIX)}
    return {k: v for k, v in sd.items() if not k.startswith(HEAD_PREFIX)}, head


def _load(model: Sam, sd: StateDict, head: StateDict, meta: Metadata, source: str, model_type: str | None = None) -> None:
    """Weights strictly, then what the metadata recommends and the proposal head."""
    load_into(model, sd, source, model_type)
    model.everything_defaults = everything_defaults(meta, f"checkpoint '{source}'")
    if head:
        model.proposal_head = _proposal_head(head, source)


def _proposal_head(sd: Mapping[str, torch.Tensor], source: str):
    check_finite(sd, source)
    try:
        return ProposalHead.from_state_dict({k: v.float() for k, v in sd.items()})
    except (KeyError, RuntimeError, IndexError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint '{source}' has a damaged proposal head ({type(exc).__name__})",
            "re-export it without the head (pocketsam export ... --drop-proposal-head) or retrain it",
        ) from exc


def _resized(config: SamConfig, img_size: int | None) -> SamConfig:
    """``config`` at input size ``img_size`` (None: unchanged)."""
    if img_size is None or img_size == config.img_size:
        return config
    if not isinstance(config.encoder, TinyViTConfig):
        raise InputError(
            f"cannot change the input size of a {config.family} encoder (its position embeddings are sized for {config.img_size})",
            "leave img_size out, or use a TinyViT model (vit_t, mobile_sam, tinysam, pocketsam_tiny)",
        )
    if img_size < 64 or img_size % 64 or img_size > ARCHITECTURE_LIMITS["img_size"]:
        raise InputError(f"input size {img_size} is not a positive multiple of 64 up to {ARCHITECTURE_LIMITS['img_size']}",
                         "use e.g. 256, 512 or 1024")
    return config.with_img_size(img_size)


