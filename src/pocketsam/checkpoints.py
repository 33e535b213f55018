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

import hashlib
import json
import math
import pickle
import re
import warnings
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

import torch

from pocketsam.errors import CheckpointError, InputError
from pocketsam.models.registry import (
    MODEL_CONFIGS,
    DecoderConfig,
    SamConfig,
    TinyViTConfig,
    ViTConfig,
    create_model,
)
from pocketsam.models.sam import Sam

StateDict = dict[str, torch.Tensor]
META_PREFIX = "pocketsam."
EVERYTHING_PREFIX = "everything."
HEAD_PREFIX = "proposal_head."
"""Key prefix of an object-proposal head (:attr:`Sam.proposal_head`) in pocketsam checkpoints."""
from pocketsam.thresholds import EVERYTHING_KEYS  # noqa: E402  (torch-free home, for the CLI parsers)
"""Settings a checkpoint may recommend to the "segment everything" generators."""
OFFICIAL_TYPES = ("vit_h", "vit_l", "vit_b", "vit_t")
HEADER_KEY = "pocketsam"
"""The safetensors metadata key whose value (JSON) holds pocketsam's metadata."""
HEADER_VERSION = 1
"""Version of that JSON value; a reader refuses newer versions with a clear error."""
Metadata = dict[str, "int | float"]
ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT_NAME = "pocketsam_tiny_synth.safetensors"


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
            f"checkpoint '{path}' is not a valid safetensors file ({_short(exc)})", "re-download or re-export it"
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
            f"checkpoint '{path}' is not a readable PyTorch checkpoint ({_short(exc)})",
            "pass a .pth/.pt state_dict or a .safetensors file",
        ) from None
    except Exception as exc:  # noqa: BLE001 — any failure to parse an untrusted file is "unreadable"
        raise CheckpointError(
            f"checkpoint '{path}' is not a readable PyTorch checkpoint ({_short(exc)})",
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
    from pocketsam.quant.artifact import weights_file

    path = weights_file(path)  # an int8 artifact folder: the file of its float model
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
                f"checkpoint '{path}' is not a valid safetensors file ({_short(exc)})", "re-download or re-export it"
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


def multimask_only_by_name(checkpoint: str | Path) -> bool:
    """TinySAM's decoder behaviour (never the single-mask token) for a detected
    architecture: a checkpoint file whose name starts with ``tinysam``."""
    return Path(checkpoint).name.lower().startswith("tinysam")


def _short(exc: BaseException) -> str:
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


# ------------------------------------------------------------------------- detection
def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def config_from_state_dict(sd: Mapping[str, torch.Tensor], meta: Mapping[str, int] | None = None) -> SamConfig:
    """Recover the full :class:`SamConfig` from tensor names and shapes.

    Raises:
        CheckpointError: the tensors are not a SAM-family layout.
    """
    meta = dict(meta or {})
    try:
        if "image_encoder.patch_embed.proj.weight" in sd:
            encoder = _vit_config(sd, meta)
        elif "image_encoder.patch_embed.seq.0.c.weight" in sd:
            encoder = _tiny_vit_config(sd, meta)
        else:
            raise KeyError("image_encoder")
        config = SamConfig(encoder=encoder, decoder=_decoder_config(sd, meta),
                           prompt_embed_dim=sd["prompt_encoder.no_mask_embed.weight"].shape[1])
    except KeyError as exc:
        sample = ", ".join(list(sd)[:3])
        raise CheckpointError(
            f"this is not a SAM-family checkpoint: no '{exc.args[0]}' tensors (keys start: {sample})",
            "pass a SAM / MobileSAM / TinySAM checkpoint or one exported by pocketsam",
        ) from None
    except (IndexError, ValueError, TypeError, ZeroDivisionError) as exc:  # a tensor of the wrong rank or size
        raise CheckpointError(
            f"this is not a SAM-family checkpoint: its tensor shapes do not describe a model ({_short(exc)})",
            "pass a SAM / MobileSAM / TinySAM checkpoint or one exported by pocketsam",
        ) from None
    check_architecture(config)
    return config


def _vit_config(sd: Mapping[str, torch.Tensor], meta: Mapping[str, int]) -> ViTConfig:
    p = "image_encoder."
    embed_dim, _, patch, _ = sd[p + "patch_embed.proj.weight"].shape
    depth = _count(sd, r"image_encoder\.blocks\.(\d+)\.")
    use_abs_pos = p + "pos_embed" in sd
    grid = sd[p + "pos_embed"].shape[1] if use_abs_pos else meta.get("img_size", 1024) // patch
    use_rel_pos = p + "blocks.0.attn.rel_pos_h" in sd
    window, global_idx, num_heads = 0, [], meta.get("vit_num_heads", max(1, embed_dim // 64))
    if use_rel_pos:
        num_heads = embed_dim // sd[p + "blocks.0.attn.rel_pos_h"].shape[1]
        for i in range(depth):
            n = (sd[p + f"blocks.{i}.attn.rel_pos_h"].shape[0] + 1) // 2
            if n == grid:
                global_idx.append(i)
            else:
                window = n
        if not window:  # every block global: any window size is equivalent
            global_idx = list(range(depth))
    else:
        window = meta.get("window_size", 14)
        global_idx = [i for i in range(depth) if meta.get(f"global_{i}", 0)]
    return ViTConfig(
        img_size=grid * patch,
        patch_size=patch,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=sd[p + "blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        window_size=window,
        global_attn_indexes=tuple(global_idx),
        qkv_bias=p + "blocks.0.attn.qkv.bias" in sd,
        use_abs_pos=use_abs_pos,
        use_rel_pos=use_rel_pos,
        out_chans=sd[p + "neck.0.weight"].shape[0],
    )


def _tiny_vit_config(sd: Mapping[str, torch.Tensor], meta: Mapping[str, int]) -> TinyViTConfig:
    p = "image_encoder."
    n_layers = _count(sd, r"image_encoder\.layers\.(\d+)\.")
    dims, depths, heads, windows = [], [], [], []
    default = TinyViTConfig()
    for i in range(n_layers):
        n_blocks = _count(sd, rf"image_encoder\.layers\.{i}\.blocks\.(\d+)\.")
        depths.append(n_blocks)
        if i == 0:
            dims.append(sd[p + "layers.0.blocks.0.conv1.c.weight"].shape[1])
            heads.append(meta.get("layer0_heads", default.num_heads[0]))
            windows.append(meta.get("layer0_window", default.window_sizes[0]))
        else:
            bias = sd[p + f"layers.{i}.blocks.0.attn.attention_biases"]
            dims.append(sd[p + f"layers.{i}.blocks.0.attn.norm.weight"].shape[0])
            heads.append(bias.shape[0])
            windows.append(math.isqrt(bias.shape[1]))
    num_classes = sd[p + "head.weight"].shape[0] if p + "head.weight" in sd else 0
    mlp_key = p + "layers.1.blocks.0.mlp.fc1.weight"
    return TinyViTConfig(
        img_size=meta.get("img_size", 1024),
        embed_dims=tuple(dims),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=sd[mlp_key].shape[0] / dims[1] if mlp_key in sd else default.mlp_ratio,
        mbconv_expand_ratio=sd[p + "layers.0.blocks.0.conv1.c.weight"].shape[0] / dims[0],
        local_conv_size=sd[p + "layers.1.blocks.0.local_conv.c.weight"].shape[-1]
        if p + "layers.1.blocks.0.local_conv.c.weight" in sd else default.local_conv_size,
        num_classes=num_classes,
        out_chans=sd[p + "neck.0.weight"].shape[0],
        neck_kernel_size=sd[p + "neck.2.weight"].shape[-1],
    )


def _decoder_config(sd: Mapping[str, torch.Tensor], meta: Mapping[str, int]) -> DecoderConfig:
    t = "mask_decoder.transformer."
    dim = sd["mask_decoder.iou_token.weight"].shape[1]
    return DecoderConfig(
        transformer_depth=_count(sd, r"mask_decoder\.transformer\.layers\.(\d+)\."),
        transformer_mlp_dim=sd[t + "layers.0.mlp.lin1.weight"].shape[0],
        transformer_num_heads=meta.get("transformer_num_heads", 8),
        attention_downsample_rate=dim // sd[t + "final_attn_token_to_image.q_proj.weight"].shape[0],
        num_multimask_outputs=sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        iou_head_depth=_count(sd, r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\."),
        iou_head_hidden_dim=sd["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0],
        mask_in_chans=sd["prompt_encoder.mask_downscaling.3.weight"].shape[0],
        multimask_only=bool(meta.get("multimask_only", 0)),
    )


def config_metadata(config: SamConfig) -> dict[str, int]:
    """The ``pocketsam.*`` metadata needed to rebuild ``config`` from its tensors."""
    meta: dict[str, int] = {}
    enc, dec = config.encoder, config.decoder
    if isinstance(enc, TinyViTConfig):
        default = TinyViTConfig()
        if enc.img_size != 1024:
            meta["img_size"] = enc.img_size
        # stage 0 is convolutional: its heads/window change nothing but are kept for a faithful config
        if enc.num_heads[0] != default.num_heads[0]:
            meta["layer0_heads"] = enc.num_heads[0]
        if enc.window_sizes[0] != default.window_sizes[0]:
            meta["layer0_window"] = enc.window_sizes[0]
    elif not enc.use_rel_pos:
        meta["vit_num_heads"] = enc.num_heads
        meta["window_size"] = enc.window_size
        meta.update({f"global_{i}": 1 for i in enc.global_attn_indexes})
        if not enc.use_abs_pos:
            meta["img_size"] = enc.img_size
    if dec.transformer_num_heads != 8:
        meta["transformer_num_heads"] = dec.transformer_num_heads
    if dec.multimask_only:
        meta["multimask_only"] = 1
    return meta



# --------------------------------------------------------------------------- limits
#: Bounds on an architecture read from a file, checked before anything is allocated
#: (:func:`check_architecture`): several times what every official SAM / MobileSAM /
#: TinySAM checkpoint and pocketsam preset uses (in brackets), so that a crafted file
#: cannot make loading allocate or compute without bound.
ARCHITECTURE_LIMITS: dict[str, int] = {
    "img_size": 4096,  # input side (1024)
    "width": 8192,  # any embedding / channel width (vit_h: 1280)
    "depth": 256,  # blocks of a ViT or of one TinyViT stage (vit_h: 32)
    "stages": 16,  # TinyViT stages (4)
    "heads": 256,  # attention heads (16)
    "mlp": 65536,  # hidden width of any MLP (vit_h: 5120; the decoder's 2048)
    "window": 64,  # attention window side (14)
    "patch": 64,  # ViT patch side (16)
    "kernel": 15,  # convolution kernel side (3)
    "decoder_depth": 64,  # two-way transformer layers, IoU-head layers (2, 3)
    "outputs": 16,  # multimask outputs (3)
    "classes": 100_000,  # TinyViT's unused ImageNet head (1000)
    "parameters": 4_000_000_000,  # vit_h: 641 million
    "unbacked": 64 * 2**20,  # values of buffers the file does not hold (TinyViT's bias indices)
}


def check_architecture(config: SamConfig, source: str = "the checkpoint") -> None:
    """Refuse a configuration beyond :data:`ARCHITECTURE_LIMITS` or inconsistent with itself
    (e.g. heads that do not divide the width), before any model is built.

    Raises:
        CheckpointError: naming the first setting out of bounds.
    """
    L = ARCHITECTURE_LIMITS

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CheckpointError(
                f"{source} describes an unsupported architecture: {what}",
                "it is damaged or crafted; use a SAM / MobileSAM / TinySAM checkpoint or one exported by pocketsam",
            )

    def within(name: str, value: object, low: int, high: int, integer: bool = True) -> None:
        ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        need(ok and low <= value <= high, f"{name} = {value!r} (supported: {low} to {high:,})")

    enc, dec = config.encoder, config.decoder
    within("input size", enc.img_size, 64, L["img_size"])
    within("prompt_embed_dim", config.prompt_embed_dim, 2, L["width"])
    need(enc.out_chans == config.prompt_embed_dim,
         f"encoder output width {enc.out_chans} differs from the prompt embedding width {config.prompt_embed_dim}")
    if isinstance(enc, ViTConfig):
        within("patch size", enc.patch_size, 1, L["patch"])
        need(enc.img_size % enc.patch_size == 0, f"input size {enc.img_size} is not a multiple of patch size {enc.patch_size}")
        within("embed_dim", enc.embed_dim, 1, L["width"])
        within("depth", enc.depth, 1, L["depth"])
        within("num_heads", enc.num_heads, 1, L["heads"])
        need(enc.embed_dim % enc.num_heads == 0, f"{enc.num_heads} heads do not divide embed_dim {enc.embed_dim}")
        within("MLP width", enc.mlp_ratio * enc.embed_dim, 1, L["mlp"], integer=False)
        within("window_size", enc.window_size, 0, L["window"])
        need(all(0 <= i < enc.depth for i in enc.global_attn_indexes), "global attention blocks beyond the depth")
    else:
        n = len(enc.embed_dims)
        within("number of stages", n, 2, L["stages"])
        need(len(enc.depths) == len(enc.num_heads) == len(enc.window_sizes) == n, "per-stage settings of unequal length")
        for i in range(n):
            within(f"stage {i} width", enc.embed_dims[i], 1, L["width"])
            within(f"stage {i} depth", enc.depths[i], 1, L["depth"])
            within(f"stage {i} heads", enc.num_heads[i], 1, L["heads"])
            within(f"stage {i} window", enc.window_sizes[i], 1, L["window"])
            if i:
                need(enc.embed_dims[i] % enc.num_heads[i] == 0,
                     f"stage {i}: {enc.num_heads[i]} heads do not divide width {enc.embed_dims[i]}")
                within(f"stage {i} MLP width", enc.mlp_ratio * enc.embed_dims[i], 1, L["mlp"], integer=False)
        within("MBConv width", enc.mbconv_expand_ratio * enc.embed_dims[0], 1, L["mlp"], integer=False)
        within("local_conv_size", enc.local_conv_size, 1, L["kernel"])
        within("neck kernel size", enc.neck_kernel_size, 1, L["kernel"])
        within("num_classes", enc.num_classes, 0, L["classes"])
        need(enc.img_size % 64 == 0, f"input size {enc.img_size} is not a multiple of 64")
    within("encoder out_chans", enc.out_chans, 2, L["width"])
    within("decoder depth", dec.transformer_depth, 0, L["decoder_depth"])
    within("decoder MLP width", dec.transformer_mlp_dim, 1, L["mlp"])
    within("decoder heads", dec.transformer_num_heads, 1, L["heads"])
    within("attention downsample rate", dec.attention_downsample_rate, 1, config.prompt_embed_dim)
    inner = config.prompt_embed_dim // dec.attention_downsample_rate
    need(config.prompt_embed_dim % dec.attention_downsample_rate == 0 and inner % dec.transformer_num_heads == 0,
         f"{dec.transformer_num_heads} decoder heads do not divide the attention width {inner}")
    within("multimask outputs", dec.num_multimask_outputs, 1, L["outputs"])
    within("IoU head depth", dec.iou_head_depth, 1, L["decoder_depth"])
    within("IoU head width", dec.iou_head_hidden_dim, 1, L["width"])
    within("mask input channels", dec.mask_in_chans, 4, L["width"])


def _meta_model(config: SamConfig, source: str) -> Sam:
    """``config`` built on the meta device: every shape, nothing allocated."""
    try:
        with torch.device("meta"):
            model = create_model(config)
    except (AssertionError, ValueError, RuntimeError, TypeError, ZeroDivisionError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint '{source}' describes an inconsistent architecture ({_short(exc)})",
            "it is damaged or crafted; use a SAM / MobileSAM / TinySAM checkpoint or one exported by pocketsam",
        ) from None
    backed = sum(v.numel() for v in model.state_dict().values())
    total = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    if backed > ARCHITECTURE_LIMITS["parameters"] or total - backed > ARCHITECTURE_LIMITS["unbacked"]:
        raise CheckpointError(
            f"checkpoint '{source}' describes a model of {total:,} values, beyond the supported "
            f"{ARCHITECTURE_LIMITS['parameters']:,}", "use a SAM / MobileSAM / TinySAM checkpoint",
        )
    return model

class CheckpointWarning(UserWarning):
    """Something in a checkpoint was ignored (the model still loads); the CLI prints it as
    one ``warning: …`` line."""


def check_everything_setting(key: str, value: object, name: str | None = None) -> float:
    """The one rule for the "segment everything" thresholds, wherever they come from
    (``everything`` / ``eval everything`` options, ``export`` options, a checkpoint's
    record): ``pred_iou_thresh`` and ``stability_score_thresh`` are finite numbers from
    -100 to 1 (a predicted IoU or stability score above 1 never occurs, so more would
    discard every mask); ``high_score_thresh`` is a finite mask logit.

    Args:
        name: how to call the setting in the message (default ``key``), e.g. ``--pred-iou-thresh``.
    Returns:
        the value as a float.
    Raises:
        InputError: an unknown key or an invalid value.
    """
    if key not in EVERYTHING_KEYS:
        raise InputError(f"unknown 'everything' setting '{key}'", f"use one of {', '.join(EVERYTHING_KEYS)}")
    name = name or key
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if key != "high_score_thresh" and not -100.0 <= value <= 1.0:
        raise InputError(f"{name} must be <= 1 (a number from -100 to 1), got {value:g}")
    return float(value)


def everything_defaults(meta: Mapping[str, float], source: str = "the checkpoint") -> dict[str, float]:
    """The automatic-mask-generation settings recommended in a checkpoint's metadata.

    A recorded value that :func:`check_everything_setting` refuses is left out (the
    generator's own default applies) with a :class:`CheckpointWarning`.
    """
    n = len(EVERYTHING_PREFIX)
    out: dict[str, float] = {}
    for k, v in meta.items():
        if k.startswith(EVERYTHING_PREFIX) and k[n:] in EVERYTHING_KEYS:
            try:
                out[k[n:]] = check_everything_setting(k[n:], v, f"the {k[n:]} recorded in {source}")
            except InputError as exc:
                warnings.warn(
                    f"{exc}: ignored, the generator's default is used (re-export it with "
                    f"`pocketsam export` and --drop-thresholds or a valid --{k[n:].replace('_', '-')})",
                    CheckpointWarning,
                    stacklevel=3,
                )
    return out


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a model's identity: its configuration, decoder behaviour and every
    state_dict tensor (name, dtype, shape, bytes). Independent of the file format the
    weights came from; used to key caches of anything a model computed."""
    h = hashlib.sha256()
    h.update(repr(getattr(model, "config", None)).encode())
    h.update(repr(getattr(getattr(model, "mask_decoder", None), "multimask_only", False)).encode())
    for name, t in model.state_dict().items():
        if name.startswith(HEAD_PREFIX):  # proposals never change an embedding or a mask
            continue
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


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


def reference_type(config: SamConfig) -> str | None:
    """The official architecture (``vit_h``, ``vit_l``, ``vit_b``, ``vit_t``) whose reference
    code builds exactly ``config`` (TinySAM's decoder behaviour aside: TinySAM's code builds
    ``vit_t``), else None."""
    plain = replace(config, decoder=replace(config.decoder, multimask_only=False))
    return next((t for t in OFFICIAL_TYPES if MODEL_CONFIGS[t] == plain), None)


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
    from pocketsam.io import atomic_write

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


@lru_cache(maxsize=None)
def _official_signature(model_type: str) -> frozenset[tuple[str, tuple[int, ...]]]:
    with torch.device("meta"):
        model = create_model(model_type)
    return frozenset((k, tuple(v.shape)) for k, v in model.state_dict().items())


def closest_model_type(sd: Mapping[str, torch.Tensor]) -> tuple[str, float]:
    """The official layout whose (key, shape) set overlaps ``sd`` most, and the Jaccard score."""
    sig = frozenset((k, tuple(v.shape)) for k, v in sd.items())
    scores = {t: len(sig & _official_signature(t)) / max(1, len(sig | _official_signature(t))) for t in OFFICIAL_TYPES}
    best = max(scores, key=scores.get)
    return best, scores[best]


def _examples(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (", …" if len(keys) > n else "")


def load_into(model: Sam, sd: Mapping[str, torch.Tensor], source: str, model_type: str | None = None) -> None:
    """Strictly load ``sd`` into ``model``; any mismatch is one clear CheckpointError."""
    expected = model.state_dict()
    check_fits(expected, sd, source, model_type)
    check_finite(sd, source)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=True)


def check_fits(expected: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], source: str,
               model_type: str | None = None) -> None:
    """``sd`` has exactly the keys and shapes of ``expected`` (a model's state_dict, which
    may live on the meta device); else one clear CheckpointError."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_examples(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_examples(unexpected)})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: checkpoint {list(sd[k].shape)} vs model {list(expected[k].shape)})"
            )
        closest, score = closest_model_type(sd)
        what = f"model type '{model_type}'" if model_type else "the detected architecture"
        raise CheckpointError(
            f"checkpoint '{source}' does not fit {what}: " + "; ".join(parts)
            + f". It most resembles '{closest}' ({score:.0%} of keys and shapes match)",
            "pass the matching --model-type / model_type, or model_type=None to detect it from the file",
        )


def check_finite(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Every floating-point tensor must be finite: one NaN/inf weight makes every score and
    mask of the model NaN (or empty).

    Raises:
        CheckpointError: naming the first tensors that hold NaN or inf, with the count.
    """
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"checkpoint '{source}' holds NaN or infinite values in {len(bad)} tensor(s) ({_examples(bad)})",
            "the file is damaged or comes from a diverged training run; use another checkpoint",
        )


# -------------------------------------------------------------------------- building
def default_checkpoint() -> Path:
    """Path of the bundled model (trained by pocketsam on synthetic scenes)."""
    path = ASSETS / DEFAULT_CHECKPOINT_NAME
    if not path.exists():
        raise CheckpointError(
            "no checkpoint given and this installation has no bundled model",
            "pass --checkpoint / checkpoint= with a SAM, MobileSAM or TinySAM checkpoint",
        )
    return path


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
        checkpoint: state_dict file (.pth/.pt/.safetensors), or an int8 artifact folder
            written by ``pocketsam quantize`` (the model then prefers ``mode="int8"``).
            ``None`` with a model_type gives random weights; with neither, the bundled model.
        device: where to put the model (default CPU).
        img_size: run a TinyViT-encoder model at another input size (a multiple of 64).
            Its weights do not depend on the input size, so this is how a model is
            fine-tuned at a higher resolution (``pocketsam train --init CKPT --img-size N``).
    """
    key = _resolve_type(model_type)
    if checkpoint is not None:
        from pocketsam.quant.artifact import is_artifact

        if is_artifact(checkpoint):  # `pocketsam quantize` output: float model + int8 encoder
            from pocketsam.quant import load_int8_model

            return load_int8_model(checkpoint, model_type, device, img_size)
    if checkpoint is None and key is None:
        checkpoint = default_checkpoint()
    if checkpoint is None:
        model = create_model(_resized(MODEL_CONFIGS[key], img_size))
    else:
        from pocketsam.weights import resolve_checkpoint_name

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
        from pocketsam.weights import resolve_checkpoint_name

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
    from pocketsam.models.proposal_head import ProposalHead

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
