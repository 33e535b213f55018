"""Reading checkpoints safely, detecting their architecture, and building models.

* Files are read without executing code: ``torch.load(weights_only=True)`` or safetensors.
* Plain state_dicts, dicts wrapping one under ``model``/``state_dict``, DDP ``module.``
  prefixes and fp16/bf16 tensors are accepted.
* :func:`config_from_state_dict` recovers the architecture *and every hyper-parameter*
  from tensor names and shapes. A few settings that no shape reveals (TinyViT's input size
  when it is not 1024, decoder head count when it is not 8) travel as *metadata*, and a
  checkpoint may also recommend thresholds for automatic mask generation, which
  :func:`build_sam` puts in ``Sam.everything_defaults`` (official checkpoints have none).
* Where metadata lives (:func:`save_checkpoint` writes it, :func:`_metadata` is the one
  place that reads it):

  - ``.safetensors``: the file's metadata header, one JSON value under the key
    :data:`HEADER_KEY` (``"pocketsam"``):
    ``{"version": 1, "config": {"img_size": 256, ...}, "everything": {"pred_iou_thresh": 0.4, ...}}``.
    No metadata tensors.
  - ``.pth`` of an official architecture (vit_b/l/h, vit_t, tinysam): none at all, only
    the reference keys, so the reference code's strict ``load_state_dict`` accepts it.
  - ``.pth`` of any other architecture: scalar tensors under the reserved ``pocketsam.``
    prefix (``pocketsam.img_size``, ``pocketsam.everything.pred_iou_thresh``), which only
    pocketsam reads; its loaders (:func:`build_sam`, :func:`load_state_dict`) take them
    out before loading the weights strictly.
  - Files written before the header existed (the bundled model among them) carry the
    same ``pocketsam.*`` tensors in safetensors too; they are read as before.
* Official checkpoints can be named instead of given by path
  (``build_sam(checkpoint="mobile_sam")``): :func:`build_sam` takes them from the local
  weights folder, where ``pocketsam download NAME`` puts them (:mod:`pocketsam.weights`).
"""


from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Mapping

import torch

from pocketsam.errors import CheckpointError
from pocketsam.thresholds import EVERYTHING_PREFIX
from pocketsam.weights import multimask_only_by_name  # noqa: F401  (re-exported: checkpoints' name rule)

StateDict = dict[str, torch.Tensor]
META_PREFIX = "pocketsam."
HEAD_PREFIX = "proposal_head."
"""Key prefix of an object-proposal head (:attr:`Sam.proposal_head`) in pocketsam checkpoints."""
OFFICIAL_TYPES = ("vit_h", "vit_l", "vit_b", "vit_t")
HEADER_KEY = "pocketsam"
"""The safetensors metadata key whose value (JSON) holds pocketsam's metadata."""
HEADER_VERSION = 1
"""Version of that JSON value; a reader refuses newer versions with a clear error."""
Metadata = dict[str, "int | float"]


# --------------------------------------------------------------------------- reading
def read_checkpoint(path: str | Path) -> tuple[StateDict, dict[str, float]]:
    """Read a checkpoint file into a float state_dict plus pocketsam metadata.

    Returns:
        (state_dict, meta) — tensors as stored (dtype unchanged, without metadata tensors),
        and ``{name: number}`` from the safetensors header and/or the legacy ``pocketsam.*``
        tensors (:func:`_metadata`): ints for the configuration (``img_size``), floats for
        the ``everything.*`` recommendations.
    Raises:
        CheckpointError: missing/unreadable file, a pickle that would run code, a file
        that holds no tensors, or malformed metadata.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist", "check the path to the .pth/.pt/.safetensors file")
    if path.is_dir():
        raise CheckpointError(f"checkpoint '{path}' is a directory", "pass the checkpoint file itself")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{path}' is empty", "re-download or re-export it")

    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        obj, header = _read_safetensors(path)
    else:
        obj, header = _read_torch(path), None
    return _unwrap(obj, path, header)


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def _read_safetensors(path: Path) -> tuple[dict, dict[str, str] | None]:
    """A safetensors file's tensors and its metadata header."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' is not a valid safetensors file ({short_reason(exc)})", "re-download or re-export it"
        ) from None


def _read_torch(path: Path, mmap: bool = False) -> object:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4" on non-torch pickles
            if mmap:
                try:  # zip-format files only: tensors stay on disk until touched
                    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError:
                    pass  # a legacy (non-zip) file: read it whole below
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "unsupported global" in text.lower():
            raise CheckpointError(
                f"refused to load '{path}': it contains pickled Python objects that would run code "
                "when loaded (pocketsam only loads plain tensors)",
                "if you trust the file, re-save just its state_dict with torch.save(model.state_dict(), ...)",
            ) from None
        raise CheckpointError(
            f"checkpoint '{path}' is not a readable PyTorch checkpoint ({short_reason(exc)})",
            "pass a .pth/.pt state_dict or a .safetensors file",
        ) from None
    except Exception as exc:  # noqa: BLE001 — any failure to parse an untrusted file is "unreadable"
        raise CheckpointError(
            f"checkpoint '{path}' is not a readable PyTorch checkpoint ({short_reason(exc)})",
            "pass a .pth/.pt state_dict or a .safetensors file",
        ) from None


def peek_checkpoint(path: str | Path) -> tuple[list[str], dict[str, float]]:
    """A checkpoint's tensor names and its ``pocketsam.*`` metadata (as :func:`read_checkpoint`
    returns them) without reading its weights: a safetensors file's header and metadata
    tensors only, a PyTorch file memory-mapped (a legacy non-zip file is read whole).
    Cheap for any size of file.

    Raises:
        CheckpointError: as :func:`read_checkpoint`.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        sd, meta = read_checkpoint(path)  # the same clear errors
        return list(sd), meta
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
                meta = {k: f.get_tensor(k) for k in keys if k.removeprefix("module.").startswith(META_PREFIX)}
                header = f.metadata()
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint '{path}' is not a valid safetensors file ({short_reason(exc)})", "re-download or re-export it"
            ) from None
        if not keys:
            raise CheckpointError(f"checkpoint '{path}' holds no state_dict of tensors (found an empty file)",
                                  "pass a file saved with torch.save(model.state_dict(), ...) or safetensors")
        names = [k.removeprefix("module.") for k in keys if not k.removeprefix("module.").startswith(META_PREFIX)]
        return names, _metadata(_split(meta, path)[1], header, path)
    sd, meta = _unwrap(_read_torch(path, mmap=True), path)
    return list(sd), meta


def read_metadata(path: str | Path) -> dict[str, float]:
    """The pocketsam metadata of a checkpoint (header and legacy tensors, as
    :func:`read_checkpoint` returns it), without reading its weights (:func:`peek_checkpoint`)."""
    return peek_checkpoint(path)[1]


def has_proposal_head(path: str | Path) -> bool:
    """The checkpoint file carries an object-proposal head (:data:`HEAD_PREFIX` tensors);
    read without loading the weights."""
    return any(k.startswith(HEAD_PREFIX) for k in peek_checkpoint(path)[0])


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) < 12:  # e.g. a bare KeyError '105' from parsing garbage: say what it means instead
        return "unrecognised file contents"
    return text[:160]


def _unwrap(obj: object, path: Path, header: Mapping[str, str] | None = None) -> tuple[StateDict, Metadata]:
    """The state_dict inside a loaded file, without its metadata tensors, and the file's
    metadata (:func:`_metadata`)."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"checkpoint '{path}' holds no state_dict of tensors (found {type(obj).__name__})",
            "pass a file saved with torch.save(model.state_dict(), ...) or safetensors",
        )
    state, meta = _split(obj, path)
    return state, _metadata(meta, header, path)


def _split(obj: Mapping[str, object], path: Path) -> tuple[StateDict, Metadata]:
    """Weights and legacy metadata tensors (``pocketsam.*``, one number each) of a state_dict."""
    state: StateDict = {}
    meta: Metadata = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = key[len("module.") :] if key.startswith("module.") else key
        _check_stored(key, value, path)
        if key.startswith(META_PREFIX):
            if value.numel() != 1 or value.is_complex() or value.dtype == torch.bool:
                raise CheckpointError(
                    f"checkpoint '{path}': metadata '{key}' must be one number, got a {value.dtype} tensor of shape "
                    f"{list(value.shape)}", "re-export the file with `pocketsam export`, or use another checkpoint",
                )
            number = value.item()
            if value.is_floating_point():
                meta[key[len(META_PREFIX) :]] = float(number)
            else:
                meta[key[len(META_PREFIX) :]] = int(number)
        else:
            state[key] = value
    return state, meta


def _metadata(tensors: Metadata, header: Mapping[str, str] | None, path: Path) -> Metadata:
    """The one place where a checkpoint's metadata is put together: the legacy ``pocketsam.*``
    tensors (already read by :func:`_split`) and the safetensors header's :data:`HEADER_KEY`
    value. Both use the same flat names (``img_size``, ``everything.pred_iou_thresh``); a
    name recorded in both must have the same value.

    Raises:
        CheckpointError: a malformed header value, or the two sources disagree.
    """
    meta = dict(tensors)
    for key, value in _header_metadata(header, path).items():
        if key in meta and meta[key] != value and not (meta[key] != meta[key] and value != value):  # NaN == NaN here
            raise CheckpointError(
                f"checkpoint '{path}' records metadata '{key}' twice with different values "
                f"({value!r} in its header, {meta[key]!r} as tensor '{META_PREFIX}{key}')",
                "re-export it with `pocketsam export`, or use another checkpoint",
            )
        meta[key] = value
    return meta


def _header_metadata(header: Mapping[str, str] | None, path: Path) -> Metadata:
    """pocketsam's metadata from a safetensors header (``{}`` when it has none): the JSON
    value under :data:`HEADER_KEY`, flattened to the names :func:`_split` gives the tensors.
    Other header keys (e.g. ``format``) belong to other tools and are ignored."""
    if not header or HEADER_KEY not in header:
        return {}

    def bad(what: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint '{path}' has malformed pocketsam metadata in its safetensors header: {what}",
            "re-export it with `pocketsam export`, or use another checkpoint",
        )

    try:
        record = json.loads(header[HEADER_KEY])
    except (TypeError, ValueError, RecursionError):
        raise bad(f"the '{HEADER_KEY}' value is not JSON") from None
    if not isinstance(record, dict):
        raise bad(f"the '{HEADER_KEY}' value is a JSON {type(record).__name__}, not an object")
    version = record.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"'version' is {version!r}, not a positive integer")
    if version > HEADER_VERSION:
        raise CheckpointError(
            f"checkpoint '{path}' has pocketsam metadata version {version}; this pocketsam reads "
            f"version {HEADER_VERSION} and older", "upgrade pocketsam, or re-export the checkpoint with this version",
        )
    meta: Metadata = {}
    for section, prefix in (("config", ""), ("everything", EVERYTHING_PREFIX)):
        values = record.get(section, {})
        if not isinstance(values, dict):
            raise bad(f"'{section}' is a JSON {type(values).__name__}, not an object")
        for key, value in values.items():
            kind = "an integer" if section == "config" else "a number"
            if isinstance(value, bool) or not isinstance(value, int if section == "config" else (int, float)):
                raise bad(f"'{section}.{key}' is {json.dumps(value)[:40]}, not {kind}")
            if "." in key or not key:
                raise bad(f"'{section}' has the invalid name {key!r}")
            meta[prefix + key] = float(value) if section == "everything" else value
    return meta


def header_metadata(meta: Mapping[str, int | float]) -> dict[str, str]:
    """A safetensors metadata header holding ``meta`` (the flat names of
    :func:`read_checkpoint`): ``{"pocketsam": '{"version": 1, "config": {...}, "everything": {...}}'}``."""
    n = len(EVERYTHING_PREFIX)
    record = {
        "version": HEADER_VERSION,
        "config": {k: int(v) for k, v in sorted(meta.items()) if not k.startswith(EVERYTHING_PREFIX)},
        "everything": {k[n:]: float(v) for k, v in sorted(meta.items()) if k.startswith(EVERYTHING_PREFIX)},
    }
    return {HEADER_KEY: json.dumps(record, allow_nan=False, separators=(",", ":"))}


def _check_stored(key: str, value: torch.Tensor, path: Path) -> None:
    """A tensor must store every value it declares. A broadcast (expanded, stride-0) or
    overlapping view saved with ``torch.save`` can declare billions of values in a few
    bytes; anything that later copies it (building the model sized by its shape, casting,
    checking it for NaN) would then allocate them all."""
    if value.device.type == "meta":
        raise CheckpointError(f"checkpoint '{path}': tensor '{key}' holds no data (meta tensor)", "use another checkpoint")
    if value.layout != torch.strided or value.is_complex() or value.is_quantized:
        kind = value.layout if value.layout != torch.strided else value.dtype
        raise CheckpointError(
            f"checkpoint '{path}': tensor '{key}' is a {str(kind).removeprefix('torch.')} tensor, not a dense real one",
            "a SAM checkpoint holds plain float tensors; use another checkpoint",
        )
    stored = value.untyped_storage().nbytes() // max(1, value.element_size())
    if value.numel() > stored:
        raise CheckpointError(
            f"checkpoint '{path}': tensor '{key}' declares {value.numel():,} values (shape {list(value.shape)}) "
            f"but the file stores only {stored:,}: a crafted or damaged file",
            "use another checkpoint (re-download it, or re-save the state_dict from the original model)",
        )


