"""ONNX Runtime backend: image encoder and mask decoder exported with ``torch.onnx`` and run
by onnxruntime's CPUExecutionProvider.

Exports are cached under ``cache_dir`` (default ``$POCKETSAM_CACHE/onnx`` or
``~/.cache/pocketsam/onnx``) in a folder named by a SHA-256 of the weights, the model
configuration, the input size and the torch/pocketsam versions, so a checkpoint is exported
once per machine. Files are written to a temporary name and renamed, so concurrent processes
never read a half-written model.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import replace
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pocketsam.checkpoints.fingerprint import weights_sha256
from pocketsam.errors import InputError
from pocketsam.io import atomic_path, cache_root
from pocketsam.models.info import SpeedPath
from pocketsam.models.mask_decoder import MaskDecoder
from pocketsam.runtime.decoder import fast_mask_decoder
from pocketsam.runtime.fold import fold_batchnorm, inference_copy
from pocketsam.version import __version__

OPSET = 17


def available() -> bool:
    """Whether models can be exported (``onnx``) and run (``onnxruntime``) here."""
    return find_spec("onnx") is not None and find_spec("onnxruntime") is not None


def default_cache_dir() -> Path:
    """Where exported ONNX files are cached: ``<cache root>/onnx``."""
    return cache_root("onnx")


def model_hash(model: nn.Module) -> str:
    """SHA-256 of the state_dict (names, dtypes, shapes, bytes) + config + versions."""
    h = hashlib.sha256()
    h.update(f"pocketsam={__version__};torch={torch.__version__};opset={OPSET}".encode())
    h.update(weights_sha256(model).encode())
    return h.hexdigest()


class _DecoderCore(nn.Module):
    def __init__(self, decoder: MaskDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, image_embeddings, image_pe, sparse, dense):
        return self.decoder.predict_masks(image_embeddings, image_pe, sparse, dense)


def export_graph(module: nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_axes,
            opset: int = OPSET) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(tmp), dynamo=False, opset_version=opset, input_names=input_names,
            output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
        )


def export_onnx(model: nn.Module, cache_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Export (or find cached) ``encoder.onnx`` and ``decoder.onnx`` for ``model``."""
    folder = Path(cache_dir or default_cache_dir()) / model_hash(model)[:24]
    enc_path, dec_path = folder / "encoder.onnx", folder / "decoder.onnx"
    if not (enc_path.exists() and dec_path.exists()):
        copy = inference_copy(model).cpu().float()
        if not enc_path.exists():
            export_encoder(model, enc_path)
        if not dec_path.exists():
            emb_h, emb_w = copy.prompt_encoder.image_embedding_size
            dim = copy.prompt_encoder.embed_dim
            # traced with a 1-image dense prompt and 2 prompts so the broadcast path is kept
            args = (
                torch.zeros(1, dim, emb_h, emb_w), torch.zeros(1, dim, emb_h, emb_w),
                torch.zeros(2, 3, dim), torch.zeros(1, dim, emb_h, emb_w),
            )
            export_graph(
                _DecoderCore(copy.mask_decoder), args, dec_path,
                ["image_embeddings", "image_pe", "sparse", "dense"], ["masks", "iou_pred"],
                {"sparse": {0: "prompts", 1: "tokens"}, "dense": {0: "dense_batch"},
                 "masks": {0: "prompts"}, "iou_pred": {0: "prompts"}},
            )
    return enc_path, dec_path


def export_encoder(model: nn.Module, path: Path, opset: int = OPSET, output: str = "embedding") -> Path:
    """The image encoder of ``model`` (BatchNorm folded, float32, CPU) as ONNX at ``path``:
    input ``image`` (1×3×S×S, normalised and padded), output ``output`` (1×C×S/16×S/16).
    The one encoder exporter: the runtime's ONNX and int8 paths and ``pocketsam export``."""
    copy = inference_copy(model).cpu().float()
    size = copy.img_size
    export_graph(fold_batchnorm(copy.image_encoder), (torch.zeros(1, 3, size, size),), path, ["image"], [output],
                 None, opset)
    return path


def ort_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session for the model at ``path``: ``threads`` intra-op threads
    (default: torch's), one inter-op thread, every graph optimisation."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise InputError("onnx mode needs onnxruntime", "pip install 'pocketsam[onnx]'") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().float().numpy())


class OrtImageEncoder(nn.Module):
    def __init__(self, path: Path, img_size: int, threads: int | None = None) -> None:
        super().__init__()
        self.session = ort_session(path, threads)
        self.img_size = img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(None, {"image": _np(x)})
        return torch.from_numpy(out).to(x.device)


class OrtMaskDecoder(nn.Module):
    """Same interface and output selection as :class:`MaskDecoder`; ``predict_masks`` runs in
    ONNX Runtime."""

    forward = MaskDecoder.forward

    def __init__(self, path: Path, multimask_only: bool, threads: int | None = None) -> None:
        super().__init__()
        self.session = ort_session(path, threads)
        self.multimask_only = multimask_only

    def predict_masks(self, image_embeddings, image_pe, sparse, dense):
        device = sparse.device
        masks, iou = self.session.run(None, {
            "image_embeddings": _np(image_embeddings), "image_pe": _np(image_pe),
            "sparse": _np(sparse), "dense": _np(dense),
        })
        return torch.from_numpy(masks).to(device), torch.from_numpy(iou).to(device)


def onnx_model(model: nn.Module, fast: nn.Module, cache_dir: str | Path | None = None,
               threads: int | None = None, encoder_only: bool = False) -> nn.Module:
    """Replace ``fast``'s image encoder and mask decoder by ONNX Runtime sessions;
    ``encoder_only``: the encoder only, with pocketsam's fast decoder (what ``fast`` runs,
    pocketsam's decoder being the faster one, docs/speed-peers.md)."""
    if fast.device.type != "cpu":
        raise InputError("onnx mode runs on CPU", "move the model to CPU or use mode='bf16'/'compile'")
    enc_path, dec_path = export_onnx(model, cache_dir)
    fast.image_encoder = OrtImageEncoder(enc_path, fast.img_size, threads)
    if encoder_only:
        fast.mask_decoder = fast_mask_decoder(fast.mask_decoder)
    else:
        fast.mask_decoder = OrtMaskDecoder(dec_path, fast.config.decoder.multimask_only, threads)
    what = "ONNX Runtime encoder, pocketsam decoder" if encoder_only else "ONNX Runtime"
    fast.info = replace(fast.info, speed=SpeedPath("onnx", f"{what}: {enc_path.parent}"))
    return fast
