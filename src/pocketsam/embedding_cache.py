"""The embedding cache: a model's image embeddings computed once per image and read back
memory-mapped. Distillation keeps its teacher's here (MobileSAM's decoupled distillation:
the teacher's encoder never runs during student training), and proposal-head training its
own model's.

Layout: ``ROOT/<key>/`` holds ``manifest.json`` and fp16 shards ``shard_NNNNN.npy``
(``rows × C × g × g``), read memory-mapped. ``<key>`` is derived from

* the teacher's weights (:func:`pocketsam.checkpoints.weights_sha256`: its config and
  every tensor), and
* the transform: the teacher's input size, SAM's resize-longest-side + bottom/right pad,
  pixel normalisation, and how many views of each image are cached (mirrors and quarter
  turns, see :func:`pocketsam.train.embeddings.view_content`),

so another teacher or transform can never read these embeddings. Inside, every entry is
keyed by the SHA-256 of the image file's bytes: an edited image misses the cache and is
recomputed, never served stale.

Nothing is lost when a build is killed: each shard is written to a temporary name,
renamed, then recorded in the manifest (also written atomically), so a restart redoes at
most one shard. Each shard's SHA-256 is in the manifest; a damaged shard is found when
the cache is opened, dropped with a warning, and its images are computed again by the
next build.

What the cache allows: no scale jitter or crops (the student sees exactly the teacher's
framing), and only the views it was built with: ``views`` rows per image, the teacher's
embedding of each view (1: the image as is; 2: + its left-right mirror; 4: + the up-down
mirrors; 8: + the quarter turns), ``views`` times the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from pocketsam.errors import PocketSamError
from pocketsam.io import sha256_file, write_json_atomic
from pocketsam.preprocess import PIXEL_MEAN, PIXEL_STD

FORMAT = 1
MANIFEST = "manifest.json"
#: The view counts a cache can hold: the image, its mirrors, then their quarter turns.
VIEWS = (1, 2, 4, 8)


class CacheError(PocketSamError):
    """A teacher-embedding cache cannot be used as asked."""


@dataclass(frozen=True)
class CacheTransform:
    """How an image becomes the teacher's input (part of the cache key)."""

    img_size: int
    views: int = 1  # rows per image, one of VIEWS
    resize: str = "longest-side, PIL bilinear"
    pad: str = "bottom-right, zero after normalisation"
    pixel_mean: tuple[float, ...] = PIXEL_MEAN
    pixel_std: tuple[float, ...] = PIXEL_STD

    def record(self) -> dict:
        """What the key and the manifest hold. One or two views are recorded as before
        views existed (``flip``: off or on), so that a cache built then keeps its folder and
        is read, not computed again."""
        d = asdict(self)
        if self.views <= 2:
            d["flip"] = d.pop("views") == 2
        return d


def cache_key(teacher_sha256: str, transform: CacheTransform) -> str:
    t = hashlib.sha256(json.dumps(transform.record(), sort_keys=True).encode()).hexdigest()
    views = {1: "", 2: "-flip"}.get(transform.views, f"-views{transform.views}")
    return f"{teacher_sha256[:16]}-{transform.img_size}{views}-{t[:8]}"


class TeacherCache:
    """One teacher's embeddings for one transform, under ``root/<key>``.

    Args:
        root: the cache folder (shared by any number of teachers and transforms).
        teacher_sha256: :func:`pocketsam.checkpoints.weights_sha256` of the teacher.
        transform: see :class:`CacheTransform`.
        embed_shape: (C, g, g) of the teacher's embedding (checked against the manifest).
    """

    def __init__(self, root: str | Path, teacher_sha256: str, transform: CacheTransform, embed_shape: Sequence[int]) -> None:
        self.root = Path(root)
        if transform.views not in VIEWS:
            raise CacheError(f"a cache holds {', '.join(map(str, VIEWS))} views of each image, not {transform.views}")
        if self.root.exists() and not self.root.is_dir():
            raise CacheError(f"cache '{self.root}' is a file", "give a folder for the teacher-embedding cache")
        self.teacher_sha256 = teacher_sha256
        self.transform = transform
        self.embed_shape = tuple(int(x) for x in embed_shape)
        self.dir = self.root / cache_key(teacher_sha256, transform)
        self.shards: list[dict] = []
        self.entries: dict[str, list[int]] = {}  # image sha256 -> [shard, row]
        self._maps: dict[int, np.ndarray] = {}
        self._load()

    @property
    def rows_per_image(self) -> int:
        return self.transform.views

    # -------------------------------------------------------------- manifest
    def _header(self) -> dict:
        return {
            "format": FORMAT,
            "teacher_sha256": self.teacher_sha256,
            "transform": self.transform.record(),
            "embed_shape": list(self.embed_shape),
            "dtype": "float16",
        }

    def _load(self) -> None:
        path = self.dir / MANIFEST
        if not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            header = {k: data[k] for k in self._header()}
            shards, entries = list(data["shards"]), dict(data["entries"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheError(
                f"the cache manifest '{path}' is unreadable ({exc})", f"delete '{self.dir}' to rebuild it"
            ) from exc
        expected = json.loads(json.dumps(self._header()))
        if header != expected:
            diff = [k for k in expected if header.get(k) != expected[k]]
            raise CacheError(
                f"the cache in '{self.dir}' was made for another teacher or transform ({', '.join(diff)} differ)",
                f"delete '{self.dir}' or pass another --cache folder",
            )
        bad = set()
        for i, shard in enumerate(shards):
            if shard is None:  # dropped earlier
                continue
            f = self.dir / shard["file"]
            if not f.is_file() or f.stat().st_size != shard["bytes"] or sha256_file(f) != shard["sha256"]:
                bad.add(i)
        if bad:
            lost = sum(1 for s, _ in entries.values() if s in bad)
            warnings.warn(
                f"teacher cache '{self.dir}': {len(bad)} shard(s) damaged or missing; "
                f"their {lost} image(s) will be computed again",
                stacklevel=2,
            )
            for i in bad:
                (self.dir / shards[i]["file"]).unlink(missing_ok=True)
            entries = {k: v for k, v in entries.items() if v[0] not in bad}
        self.shards = [None if i in bad else s for i, s in enumerate(shards)]  # keep indices stable
        self.entries = entries

    def _save_manifest(self) -> None:
        write_json_atomic({**self._header(), "shards": self.shards, "entries": self.entries}, self.dir / MANIFEST, indent=None)

    # ----------------------------------------------------------------- query
    def __contains__(self, image_sha256: str) -> bool:
        return image_sha256 in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def missing(self, image_shas: Iterable[str]) -> list[str]:
        return [s for s in image_shas if s not in self.entries]

    def get(self, image_sha256: str, view: int = 0) -> np.ndarray:
        """The teacher's embedding (C, g, g) fp16 of ``view`` of the image, a read-only
        memory-mapped view."""
        try:
            shard, row = self.entries[image_sha256]
        except KeyError:
            raise CacheError(
                f"no teacher embedding cached for image {image_sha256[:12]}…", "run `pocketsam distill cache` first"
            ) from None
        if not 0 <= view < self.transform.views:
            need = next((v for v in VIEWS if v > view), None) if view >= 0 else None
            raise CacheError(f"this cache holds {self.transform.views} view(s) of each image, not view {view}",
                             f"build it with --views {need}" if need else f"views are numbered 0 to {max(VIEWS) - 1}")
        arr = self._maps.get(shard)
        if arr is None:
            arr = np.load(self.dir / self.shards[shard]["file"], mmap_mode="r")
            self._maps[shard] = arr
        return arr[row + int(view)]

    def __getstate__(self):  # DataLoader workers open their own memory maps
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    # ----------------------------------------------------------------- build
    def add_shard(self, image_shas: list[str], embeddings: np.ndarray) -> None:
        """Store ``embeddings`` (len(image_shas) · rows_per_image, C, g, g) as one shard."""
        if embeddings.shape[1:] != self.embed_shape or len(embeddings) != len(image_shas) * self.rows_per_image:
            raise ValueError(f"shard of shape {embeddings.shape} does not fit {len(image_shas)} images of {self.embed_shape}")
        self.dir.mkdir(parents=True, exist_ok=True)
        index = len(self.shards)
        name = f"shard_{index:05d}.npy"
        final = self.dir / name
        tmp = self.dir / f".{name}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(embeddings, dtype=np.float16))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self.shards.append({"file": name, "rows": int(len(embeddings)), "bytes": final.stat().st_size, "sha256": sha256_file(final)})
        for i, sha in enumerate(image_shas):
            self.entries[sha] = [index, i * self.rows_per_image]
        self._save_manifest()

    def clean_temporaries(self) -> None:
        """Remove half-written shards a killed build left behind, and shards the manifest
        does not know (written, but killed before they were recorded)."""
        if not self.dir.is_dir():
            return
        known = {s["file"] for s in self.shards if s}
        for f in self.dir.iterdir():
            if f.name.startswith(".shard_") or (f.name.startswith("shard_") and f.name not in known):
                f.unlink(missing_ok=True)


def build_cache(
    cache: TeacherCache,
    images: Sequence[tuple[Path, str]],
    encode: Callable[[list[Path]], torch.Tensor],
    shard_size: int = 256,
    batch_size: int = 8,
    progress: bool = True,
) -> int:
    """Compute the teacher embeddings of every image not cached yet.

    Args:
        images: ``(path, sha256)`` pairs; duplicates (same bytes) are computed once.
        encode: ``encode(paths)`` → (B, V, C, g, g) embeddings of each of the cache's V views
            of those images (each image is read once for all its views).
    Returns:
        the number of images computed now.
    """
    from tqdm import tqdm

    cache.clean_temporaries()
    todo: dict[str, Path] = {}
    for path, sha in images:
        if sha not in cache and sha not in todo:
            todo[sha] = path
    if not todo:
        return 0
    items = list(todo.items())
    n_views = cache.rows_per_image
    desc = "teacher embeddings" + (f", {n_views} views each" if n_views > 1 else "")
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(items), shard_size):
        chunk = items[start : start + shard_size]
        rows: list[np.ndarray] = []
        for b in range(0, len(chunk), batch_size):
            paths = [p for _, p in chunk[b : b + batch_size]]
            views = encode(paths).float().cpu().numpy()
            rows.append(views.reshape(-1, *views.shape[2:]).astype(np.float16))  # rows: image i's views in order, then i+1's
            bar.update(len(paths))
        cache.add_shard([sha for sha, _ in chunk], np.concatenate(rows))
    bar.close()
    return len(items)
