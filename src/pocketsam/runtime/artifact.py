"""The int8 artifact: a folder that loads without running code.

::

    OUT/
      pocketsam_int8.json   metadata: format, versions, SHA-256 of every file, how it was
                            quantised (policy, calibration images, range search), quality
      model.safetensors     the float32 model (official layout; pocketsam metadata in its header): prompt
                            encoder, mask decoder, and the float path (mode="default")
      encoder.int8.onnx     the image encoder, static int8 QDQ (ONNX Runtime)

Loading (:func:`load_artifact`) parses JSON, reads safetensors and hands the ONNX file to
ONNX Runtime: none of them can execute code (no pickle anywhere). Before that, every file is
checked against the SHA-256 recorded in the JSON, the ONNX graph is checked to use only the
standard ONNX and ONNX Runtime operator domains and no external data files, so a damaged or
edited artifact is one clear :class:`~pocketsam.errors.CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pocketsam.errors import CheckpointError, InputError
from pocketsam.io import sha256_file

META_NAME = "pocketsam_int8.json"
WEIGHTS_NAME = "model.safetensors"
ENCODER_NAME = "encoder.int8.onnx"
FORMAT = "pocketsam-int8"
VERSION = 2
"""2: the metadata carries its own SHA-256 (``sha256``), so an edited value is refused."""
SEAL_KEY = "sha256"
#: operator domains an artifact's graph may use: standard ONNX and ONNX Runtime's built-in
#: contrib kernels (custom-op libraries are never registered).
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "com.microsoft"})


@dataclass
class Int8Artifact:
    """A checked artifact: where its files are and what its metadata says."""

    folder: Path
    meta: dict = field(default_factory=dict)
    model_sha256: str | None = None
    """:func:`~pocketsam.checkpoints.weights_sha256` of the float model it was loaded with
    (set by the loader): int8 runs only while the model's weights are still these."""

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS_NAME

    @property
    def encoder_path(self) -> Path:
        return self.folder / ENCODER_NAME

    @property
    def img_size(self) -> int:
        return int(self.meta["img_size"])

    def describe(self) -> str:
        q = self.meta.get("quality") or {}
        iou = q.get("mask_iou_vs_fp32")
        return (f"int8 encoder from '{self.folder}'"
                + (f" (mask IoU vs float32 {iou:.3f} on its calibration images)" if isinstance(iou, float) else ""))


def seal(meta: dict) -> str:
    """SHA-256 of the metadata without its own seal (canonical JSON): written into the
    metadata as :data:`SEAL_KEY` and checked on load."""
    rest = {k: v for k, v in meta.items() if k != SEAL_KEY}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_artifact(path: str | Path) -> bool:
    """Whether ``path`` is an artifact folder (or its metadata file)."""
    p = Path(path)
    return (p.is_dir() and (p / META_NAME).is_file()) or (p.name == META_NAME and p.is_file())


def damaged_artifact(folder: Path, why: str, what: str, maker: str) -> CheckpointError:
    """The one error for an artifact folder that fails a check: which (``what`` at
    ``folder``), ``why``, and how to make it again (``maker``)."""
    return CheckpointError(f"{what} '{folder}' is damaged: {why}", f"re-create it with {maker}")


def _damaged(folder: Path, why: str) -> CheckpointError:
    return damaged_artifact(folder, why, "int8 artifact", "`pocketsam quantize CKPT --calib DIR --out OUT`")


def read_sealed_metadata(path: str | Path, meta_name: str, format_: str, version: int, files: tuple[str, ...],
                         what: str, maker: str) -> tuple[Path, dict]:
    """The checked metadata of an artifact folder (or of its metadata file ``meta_name``):
    readable JSON of ``format_`` and ``version``, sealed (:func:`seal`: not edited since it
    was written), listing exactly ``files``, with a valid input size. One rule for every
    kind of artifact pocketsam writes (its own int8, OpenVINO's NNCF int8).

    Returns:
        (folder, metadata).
    Raises:
        CheckpointError: naming what is wrong and how to make the artifact again (``maker``).
    """
    p = Path(path)
    folder = p.parent if p.name == meta_name and p.is_file() else p
    meta_path = folder / meta_name

    def damaged(why: str) -> CheckpointError:
        return damaged_artifact(folder, why, what, maker)

    if not meta_path.is_file():
        raise CheckpointError(f"'{folder}' is not an {what} (no {meta_name})", f"pass the folder written by {maker}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(f"{meta_name} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != format_:
        raise damaged(f"{meta_name} does not describe a {format_} artifact")
    if meta.get("version") != version:
        raise CheckpointError(f"{what} '{folder}' has format version {meta.get('version')!r}; this pocketsam reads "
                              f"version {version}", f"re-create it with this pocketsam ({maker})")
    if meta.get(SEAL_KEY) != seal(meta):
        raise damaged(f"{meta_name} was edited after it was written (its recorded SHA-256 does not match)")
    listed = meta.get("files")
    if not isinstance(listed, dict) or set(listed) != set(files) or not all(isinstance(v, dict) for v in listed.values()):
        raise damaged(f"{meta_name} does not list {', '.join(files)}")
    size = meta.get("img_size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or size % 16:
        raise damaged(f"{meta_name} has no valid input size")
    return folder, meta


def load_artifact(path: str | Path, verify: bool = True) -> Int8Artifact:
    """Read and check an artifact folder (or its ``pocketsam_int8.json``).

    Raises:
        CheckpointError: not an artifact, unreadable/invalid metadata, a missing file, a
            checksum mismatch, or a graph with unknown operator domains / external data.
    """
    folder, meta = read_sealed_metadata(path, META_NAME, FORMAT, VERSION, (WEIGHTS_NAME, ENCODER_NAME), "int8 artifact",
                                        "`pocketsam quantize`")
    art = Int8Artifact(folder, meta)
    if verify:
        for name, info in meta["files"].items():
            f = folder / name
            if not f.is_file():
                raise _damaged(folder, f"{name} is missing")
            if sha256_file(f) != info.get("sha256"):
                raise _damaged(folder, f"{name} does not match the checksum recorded in {META_NAME}")
        check_graph(art.encoder_path, folder)
    return art


def check_graph(path: Path, folder: Path | None = None) -> None:
    """The ONNX graph uses only :data:`ALLOWED_DOMAINS` and no external data."""
    try:
        import onnx  # optional dependency (the [onnx] extra)
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise InputError("int8 artifacts need onnx and onnxruntime", "pip install 'pocketsam[onnx]'") from exc
    folder = folder or path.parent
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure of an untrusted file
        raise _damaged(folder, f"{path.name} is not a readable ONNX model ({type(exc).__name__})") from None
    domains = {n.domain for n in model.graph.node}
    bad = sorted(d for d in domains if d not in ALLOWED_DOMAINS)
    if bad:
        raise _damaged(folder, f"{path.name} uses operator domain(s) {', '.join(bad)}, which pocketsam never writes")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise _damaged(folder, f"{path.name} refers to external data files, which pocketsam never writes")
