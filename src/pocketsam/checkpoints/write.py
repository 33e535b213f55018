"""Writing checkpoints: official layouts stay loadable by the reference code, pocketsam's own
files keep their metadata (see :mod:`pocketsam.checkpoints.read` for where it lives)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

import torch

from pocketsam.checkpoints.detect import config_metadata, reference_type
from pocketsam.checkpoints.read import (
    HEAD_PREFIX,
    META_PREFIX,
    Metadata,
    StateDict,
    header_metadata,
    multimask_only_by_name,
)
from pocketsam.errors import CheckpointWarning
from pocketsam.io import atomic_write
from pocketsam.models.sam import Sam
from pocketsam.thresholds import EVERYTHING_PREFIX, check_everything_setting


def checkpoint_metadata(model: Sam, everything: bool = True) -> Metadata:
    """What a checkpoint of ``model`` records besides its weights (flat names, as
    :func:`read_checkpoint` returns them): the config hints no tensor shape reveals
    (:func:`config_metadata`) and, with ``everything``, its ``everything_defaults``.

    Raises:
        InputError: an ``everything_defaults`` value :func:`check_everything_setting` refuses.
    """
    meta: Metadata = dict(config_metadata(model.config))
    for key, value in (model.everything_defaults if everything else {}).items():
        meta[EVERYTHING_PREFIX + key] = check_everything_setting(key, value, f"everything_defaults['{key}']")
    return meta


def metadata_tensors(meta: Mapping[str, int | float]) -> StateDict:
    """``meta`` as the ``pocketsam.*`` scalar tensors of a ``.pth`` file (int64 for the
    config, float64 for the thresholds)."""
    return {META_PREFIX + k: torch.tensor(v, dtype=torch.float64 if k.startswith(EVERYTHING_PREFIX) else torch.int64)
            for k, v in meta.items()}


def export_state_dict(model: Sam, everything: bool = True) -> StateDict:
    """Official-layout state_dict plus the metadata tensors that make its config recoverable
    and, with ``everything``, its ``everything_defaults``: the form of a ``.pth`` file of a
    non-official architecture (and of training checkpoints)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return {**state, **metadata_tensors(checkpoint_metadata(model, everything))}



def checkpoint_contents(model: Sam, path: str | Path, dtype: torch.dtype | None = None) -> tuple[StateDict, Metadata]:
    """The tensors and the metadata :func:`save_checkpoint` writes for ``model`` at ``path``
    (the suffix decides, see there), without writing anything; works on the meta device."""
    path = Path(path)
    official_pth = path.suffix != ".safetensors" and reference_type(model.config) is not None
    state = {k: v.detach().cpu().contiguous() if v.device.type != "meta" else v.detach()
             for k, v in model.state_dict().items() if not (official_pth and k.startswith(HEAD_PREFIX))}
    if dtype is not None:  # a 0-d tensor is a setting, not a weight (the proposal head's score_thresh): kept exact
        state = {k: v.to(dtype) if v.is_floating_point() and v.dim() else v for k, v in state.items()}
    left_out = [what for what, lost in (
        ("the recommended 'everything' thresholds", bool(model.everything_defaults)),
        ("the proposal head", model.proposal_head is not None),
        ("TinySAM's decoder behaviour (pocketsam applies it to a file whose name starts with 'tinysam', "
         "or with model_type='tinysam')", model.config.decoder.multimask_only and not multimask_only_by_name(path)),
    ) if official_pth and lost]
    if left_out:
        warnings.warn(f"'{path.name}' holds only the reference keys of an official architecture, so it does not "
                      f"record {'; '.join(left_out)}: write a .safetensors file to keep them", CheckpointWarning,
                      stacklevel=3)
    return state, ({} if official_pth else checkpoint_metadata(model))


def save_checkpoint(model: Sam, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` atomically in the official layout (+ its metadata): safetensors for
    a ``.safetensors`` path, else a ``torch.save`` state_dict. ``dtype`` (e.g. float16) casts
    the weights — :func:`build_sam` loads such files back into float32.

    * ``.safetensors``: weights (and a proposal head) as tensors; config hints and
      ``everything_defaults`` in the metadata header (:func:`header_metadata`).
    * ``.pth`` of an official architecture (:func:`reference_type`: SAM ViT-B/L/H, MobileSAM,
      TinySAM): exactly the reference keys, since the reference loaders are strict. It
      carries neither ``everything_defaults`` nor a proposal head, nor TinySAM's
      decoder behaviour, which pocketsam takes from a file name starting with ``tinysam``;
      a :class:`CheckpointWarning` names whatever the model had that the file leaves out.
    * ``.pth`` of any other architecture: weights, proposal head and ``pocketsam.*``
      metadata tensors (:func:`export_state_dict`), which only pocketsam reads.
    """

    path = Path(path)
    state, meta = checkpoint_contents(model, path, dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        data = save(state, metadata=header_metadata(meta))
        with atomic_write(path, "wb") as f:
            f.write(data)
    else:
        with atomic_write(path, "wb") as f:
            torch.save({**state, **metadata_tensors(meta)}, f)
    return path
