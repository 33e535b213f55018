"""A model's identity, independent of the file its weights came from: the key of every cache
of something a model computed (ONNX exports, int8 copies, fast-mode measurements, teacher
embeddings)."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
from torch import nn

from pocketsam.checkpoints.read import HEAD_PREFIX

_MEMO: OrderedDict[tuple, str] = OrderedDict()
_MEMO_SIZE = 16


def weights_key(model: nn.Module) -> tuple:
    """Cheap identity of a model's current weights (storage and in-place version of every
    parameter and buffer): changes whenever a weight is replaced or modified in place."""
    return tuple(
        (t.data_ptr(), t._version, t.dtype, t.device.type)
        for t in (*model.parameters(), *model.buffers())
    )


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's identity: its configuration, decoder behaviour and every
    state_dict tensor (name, dtype, shape, bytes), the proposal head excepted (it never
    changes an embedding or a mask).

    Hashing every weight of a large model takes a while, so the result is remembered for
    as long as :func:`weights_key` says the weights are unchanged (a copy sharing the
    weights, e.g. an inference copy, hits the same entry)."""
    config, multimask_only = repr(model.config), repr(model.mask_decoder.multimask_only)
    key = (config, multimask_only, weights_key(model))
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    h = hashlib.sha256()
    h.update(config.encode())
    h.update(multimask_only.encode())
    for name, t in model.state_dict().items():
        if name.startswith(HEAD_PREFIX):
            continue
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    _MEMO[key] = digest = h.hexdigest()
    if len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return digest
