"""Checkpoints: read safely, detect the architecture, write, build a float model.

* :mod:`~pocketsam.checkpoints.read`: files → tensors + metadata, never executing code
  (``torch.load(weights_only=True)`` or safetensors); where metadata lives.
* :mod:`~pocketsam.checkpoints.detect`: every hyper-parameter from tensor names and shapes,
  the bounds a described architecture must respect, strict fit checks.
* :mod:`~pocketsam.checkpoints.write`: official layouts for official architectures,
  pocketsam's metadata for the rest.
* :mod:`~pocketsam.checkpoints.build`: a float model from a file, a name or the bundled model.
* :mod:`~pocketsam.checkpoints.fingerprint`: a model's identity for caches.

int8 artifacts and speed paths are the runtime's (:mod:`pocketsam.runtime`), one layer up.
"""

from pocketsam.checkpoints.build import build_model, default_checkpoint, load_state_dict
from pocketsam.checkpoints.detect import (
    ARCHITECTURE_LIMITS,
    check_architecture,
    closest_model_type,
    config_from_state_dict,
    config_metadata,
    reference_type,
)
from pocketsam.checkpoints.fingerprint import weights_key, weights_sha256
from pocketsam.checkpoints.read import (
    HEAD_PREFIX,
    HEADER_KEY,
    META_PREFIX,
    OFFICIAL_TYPES,
    has_proposal_head,
    multimask_only_by_name,
    peek_checkpoint,
    read_checkpoint,
    read_metadata,
)
from pocketsam.checkpoints.write import (
    checkpoint_contents,
    checkpoint_metadata,
    export_state_dict,
    metadata_tensors,
    save_checkpoint,
)

__all__ = [
    "ARCHITECTURE_LIMITS", "HEADER_KEY", "HEAD_PREFIX", "META_PREFIX", "OFFICIAL_TYPES", "build_model",
    "check_architecture", "checkpoint_contents", "checkpoint_metadata", "closest_model_type",
    "config_from_state_dict", "config_metadata", "default_checkpoint", "export_state_dict", "has_proposal_head",
    "load_state_dict", "metadata_tensors", "multimask_only_by_name", "peek_checkpoint", "read_checkpoint",
    "read_metadata", "reference_type", "save_checkpoint", "weights_key", "weights_sha256",
]
