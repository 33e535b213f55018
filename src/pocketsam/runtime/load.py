"""The loader: :func:`build_sam` for every checkpoint pocketsam reads — float files (through
:mod:`pocketsam.checkpoints`), official names, the bundled model, and int8 artifact folders
(``pocketsam quantize``), which it verifies and records in ``model.info``.
It sits above the checkpoints layer, so a float load never comes back through here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from pocketsam.checkpoints import build_model, weights_sha256
from pocketsam.errors import CheckpointError, InputError, InputTypeError
from pocketsam.models.registry import MODEL_CONFIGS
from pocketsam.models.sam import Sam
from pocketsam.runtime import artifact, openvino
from pocketsam.runtime.artifact import is_artifact, load_artifact
from pocketsam.weights import resolve_checkpoint_name


def build_sam(
    model_type: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    img_size: int | None = None,
) -> Sam:
    """Build a SAM-family model, in eval mode.

    Args:
        model_type: ``vit_h``, ``vit_l``, ``vit_b``, ``vit_t``, ``mobile_sam`` or ``tinysam``;
            ``None`` reads the architecture and hyper-parameters from the checkpoint (a
            file whose name starts with ``tinysam`` then gets TinySAM's decoder behaviour).
        checkpoint: state_dict file (.pth/.pt/.safetensors), an official name after
            ``pocketsam download NAME`` (``"mobile_sam"``), ``"bundled"``, or an int8
            artifact folder written by ``pocketsam quantize`` (the model then prefers
            ``mode="int8"``). ``None`` with a model_type gives random weights; with
            neither, the bundled model.
        device: where to put the model (default CPU).
        img_size: run a TinyViT-encoder model at another input size (a multiple of 64).
    Returns:
        the model; ``model.info`` records where it came from.
    Raises:
        CheckpointError, InputError: one clear message for any bad file or argument.
    """
    if checkpoint is not None and not isinstance(checkpoint, (str, Path)):
        raise InputTypeError(f"checkpoint must be a path or a name, got {type(checkpoint).__name__}",
                             "pass e.g. checkpoint='mobile_sam.pt'")
    if model_type is not None and not isinstance(model_type, str):
        raise InputTypeError(f"model_type must be a string, got {type(model_type).__name__}",
                             f"use one of {', '.join(MODEL_CONFIGS)}")
    if checkpoint is not None and (is_artifact(checkpoint) or openvino.is_artifact(checkpoint)):
        return load_int8_model(checkpoint, model_type, device, img_size)
    return build_model(model_type, checkpoint, device, img_size)


def load_int8_model(path: str | Path, model_type: str | None = None, device=None, img_size: int | None = None) -> Sam:
    """The float model of an int8 artifact (pocketsam's, or OpenVINO's NNCF one), with the
    artifact in ``model.info.int8`` and ``int8`` as its preferred speed mode."""
    art = openvino.load_artifact(path) if openvino.is_artifact(path) else load_artifact(path)
    if img_size is not None and img_size != art.img_size:
        raise InputError(f"this int8 artifact's encoder was quantised for {art.img_size}² inputs, not {img_size}²",
                         "leave img_size out, or quantise the float model at that size")
    model = build_model(model_type, art.weights_path, device=device)
    if model.img_size != art.img_size:
        raise CheckpointError(f"int8 artifact '{art.folder}' is damaged: its metadata and its weights disagree on "
                              "the input size", "re-create it with `pocketsam quantize`")
    art.model_sha256 = weights_sha256(model)
    model.info = replace(model.info, source=str(art.folder), int8=art, preferred_mode="int8")
    return model


def _artifact_folder(path: Path) -> tuple[Path, str, str] | None:
    """(folder, metadata file name, weights file name) of an int8 artifact, else None."""
    for kind in (artifact, openvino):
        if kind.is_artifact(path):
            folder = path.parent if path.is_file() else path
            return folder, kind.META_NAME, kind.WEIGHTS_NAME
    return None


def float_weights_file(checkpoint: str | Path) -> Path:
    """The file holding a checkpoint's float weights and metadata: the file itself, an
    official name's downloaded file, or an int8 artifact's ``model.safetensors`` (for
    :func:`pocketsam.checkpoints.read_metadata` and friends, which read files only)."""
    path = resolve_checkpoint_name(checkpoint)
    found = _artifact_folder(Path(path))
    return found[0] / found[2] if found else path


def identity_file(checkpoint: str | Path) -> Path:
    """The file that identifies a checkpoint's contents: an artifact's metadata (it holds
    the SHA-256 of every other file), else the checkpoint file itself."""
    path = resolve_checkpoint_name(checkpoint)
    found = _artifact_folder(Path(path))
    return found[0] / found[1] if found else path


def _registry_entry(model_type: str) -> Callable[..., Sam]:
    def build(checkpoint: str | Path | None = None) -> Sam:
        return build_sam(model_type, checkpoint)

    build.__name__ = f"build_sam_{model_type}"
    return build


sam_model_registry: dict[str, Callable[..., Sam]] = {
    "default": _registry_entry("vit_h"),
    **{name: _registry_entry(name) for name in MODEL_CONFIGS},
}
"""segment_anything-compatible: ``sam_model_registry["vit_b"](checkpoint="sam_vit_b_01ec64.pth")``."""
