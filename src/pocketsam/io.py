"""Image loading and atomic file output, shared by every part of pocketsam.

* :func:`load_image` turns any image file Pillow can read into the one array type the
  models take: ``uint8`` H×W×3 RGB, EXIF orientation applied. Every failure (missing
  file, directory, not an image, corrupt data, absurdly large image) becomes an
  :class:`~pocketsam.errors.InputError` whose message says what to do.
* :func:`atomic_write`, :func:`write_bytes_atomic`, :func:`write_text_atomic`,
  :func:`write_json_atomic` and :func:`save_png_atomic` write to a temporary file in the
  destination's directory and ``os.replace`` it over the destination, so a crash or
  Ctrl-C never leaves a half-written output behind. Failures to write become
  :class:`~pocketsam.errors.InputError` too (the output path is the user's input).
* :func:`replace_files_together` replaces a set of outputs (e.g. masks plus the index
  that lists them) as a whole: staged beside the folder, moved in only once all are written.
* :func:`remove_stale_temporaries` deletes what a killed process left of those (hidden
  ``.NAME.<12 hex>.tmp`` files and staging folders); :func:`folder_lock` keeps two
  processes from working in one output folder at once.

Conversion rules of :func:`load_image`:

* **Alpha** (RGBA, LA, PA, palette with transparency, premultiplied modes) is composited
  over **white**. Transparent pixels often hold arbitrary colour data (frequently
  black); compositing gives the model what a viewer on a light background shows and
  makes transparent regions one uniform colour instead of hidden junk.
* **Grayscale, bilevel, palette, CMYK, YCbCr, LAB, HSV** are converted to RGB by Pillow.
* **16-bit integer** images (``I;16*``) are scaled linearly from 0..65535 to 0..255
  (``round(v / 257)``), keeping their full tonal range rather than clipping at 255 as
  Pillow's own ``convert("L")`` does.
* **32-bit integer** (``I``) and **float** (``F``) images carry no defined range. Values
  already in 0..255 (``I``) or 0..1 (``F``) are mapped as such; ``I`` data within
  0..65535 is treated as 16-bit; anything else is stretched linearly from its own
  minimum..maximum to 0..255 (NaN/inf count as 0; a constant out-of-range image becomes
  black).
* Multi-frame files (animated GIF/WebP, multi-page TIFF): the first frame is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pocketsam.errors import InputError

PathLike = Union[str, "os.PathLike[str]"]

#: Default pixel limit of :func:`load_image`: twice Pillow's own warning threshold, i.e.
#: the size at which Pillow itself refuses an image (about 179 megapixels; an RGB uint8
#: array of that size is ~537 MB).
DEFAULT_MAX_PIXELS: int = 2 * 89_478_485

# Pillow's global bomb limit is process-wide state; we lift it only under this lock, and
# only when a caller explicitly allows more pixels than Pillow's default does.
_PIL_LIMIT_LOCK = threading.Lock()

_SUPPORTED = "JPEG, PNG, WebP, TIFF, BMP, GIF and the other formats Pillow reads"


# --------------------------------------------------------------------------- loading


def load_image(path: PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        path: image file (any format Pillow reads).
        max_pixels: refuse images with more than this many pixels (width × height),
            a guard against decompression bombs. ``None`` disables the check.
    Returns:
        ``uint8`` array of shape H×W×3 (RGB), C-contiguous, with EXIF orientation applied
        (H and W are the *displayed* height and width). See the module docstring for how
        alpha, grayscale and high-bit-depth images are converted.
    Raises:
        InputError: missing file, a directory, unreadable, not an image, corrupt or
            truncated data, or more than ``max_pixels`` pixels.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"image '{path}' does not exist", "check the path")
    if p.is_dir():
        raise InputError(f"image '{path}' is a directory", "give the path of an image file")
    if max_pixels is not None and max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive or None, got {max_pixels}")

    try:
        with _open_with_limit(p, max_pixels) as im:
            _check_pixels(im.size, path, max_pixels)
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb_uint8(im)
    except InputError:
        raise
    except PermissionError:
        raise InputError(
            f"cannot read image '{path}': permission denied", "check the file's permissions"
        ) from None
    except UnidentifiedImageError:
        raise InputError(
            f"'{path}' is not an image pocketsam can read",
            f"give an image file ({_SUPPORTED})",
        ) from None
    except Image.DecompressionBombError as exc:  # only if Pillow's limit was still active
        raise InputError(
            f"image '{path}' is too large: {exc}",
            "pass a larger max_pixels (CLI: --max-pixels) if you trust this file",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        # Pillow reports truncated / corrupt data with any of these.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(
            f"image '{path}' is corrupt or truncated ({reason})",
            "re-export or re-download the file",
        ) from None
    except MemoryError:
        raise InputError(
            f"not enough memory to decode image '{path}'", "use a smaller image"
        ) from None


@contextmanager
def _open_with_limit(p: Path, max_pixels: int | None) -> Iterator[Image.Image]:
    """``Image.open`` with our own pixel limit instead of Pillow's global one.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` and raises above twice that; we silence
    the warning (we check ourselves) and lift Pillow's limit only when the caller allows
    more than Pillow would.
    """
    pil_limit = Image.MAX_IMAGE_PIXELS
    lift = pil_limit is not None and (max_pixels is None or max_pixels > 2 * pil_limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if lift:
            with _PIL_LIMIT_LOCK:
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    im = Image.open(p)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
        else:
            im = Image.open(p)
        with im:
            yield im


def _check_pixels(size: tuple[int, int], path: PathLike, max_pixels: int | None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise InputError(f"image '{path}' is empty ({w}x{h} pixels)", "give a non-empty image")
    if max_pixels is not None and w * h > max_pixels:
        raise InputError(
            f"image '{path}' is {w}x{h} = {_pixels(w * h)}, above the limit of "
            f"{_pixels(max_pixels)} (a guard against decompression bombs)",
            f"if you trust this file, raise the limit: --max-pixels {w * h} "
            f"(Python: load_image(..., max_pixels={w * h}))",
        )


def _pixels(n: int) -> str:
    return f"{n / 1e6:.1f} megapixels" if n >= 1_000_000 else f"{n:,} pixels"


def _to_rgb_uint8(im: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image of any mode to a ``uint8`` H×W×3 RGB array."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = _high_depth_to_uint8(np.asarray(im), mode)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode in ("PA", "La", "RGBa"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _high_depth_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 2-D 16-bit / 32-bit integer / float array to ``uint8`` (see module doc)."""
    if mode.startswith("I;16"):
        return _scale(a.astype(np.float64), 0.0, 65535.0)
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    a = np.where(finite, a, 0.0)
    lo, hi = float(a.min()), float(a.max())
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        return _scale(a, 0.0, 1.0)
    if lo >= 0.0 and hi <= 255.0:
        return _scale(a, 0.0, 255.0)
    if mode == "I" and lo >= 0.0 and hi <= 65535.0:
        return _scale(a, 0.0, 65535.0)
    if hi == lo:
        return np.zeros(a.shape, np.uint8)
    return _scale(a, lo, hi)


def _scale(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = (a - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- writing


#: pocketsam's temporaries: ``.NAME.<12 hex digits>.tmp`` (:func:`atomic_write`'s files,
#: :func:`replace_files_together`'s staging folders).
TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


def _temporary_name(name: str) -> str:
    return f".{name}.{uuid.uuid4().hex[:12]}.tmp"


def remove_stale_temporaries(folder: PathLike, depth: int = 0, also: str | None = None) -> int:
    """Delete the temporaries a killed pocketsam process left in ``folder`` (and in its
    sub-folders down to ``depth`` levels): files and staging folders named like
    :data:`TEMPORARY_NAME`, plus names matching the regular expression ``also``. Nothing
    else is touched. Call it where no other process can be writing, e.g. under
    :func:`folder_lock`. A missing folder is no error.

    Returns:
        how many were removed.
    """
    pattern = re.compile(also) if also else None
    removed = 0
    folders = [Path(folder)]
    for level in range(depth + 1):
        below: list[Path] = []
        for d in folders:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for e in entries:
                ours = TEMPORARY_NAME.fullmatch(e.name) or (pattern is not None and pattern.fullmatch(e.name))
                is_dir = e.is_dir(follow_symlinks=False)
                if ours:
                    try:
                        shutil.rmtree(e.path) if is_dir else os.unlink(e.path)
                        removed += 1
                    except OSError:
                        pass
                elif is_dir and level < depth:
                    below.append(Path(e.path))
        folders = below
    return removed


LOCK_NAME = ".pocketsam.lock"


@contextmanager
def folder_lock(folder: PathLike, what: str = "pocketsam process") -> Iterator[Path]:
    """Work in ``folder`` (created if needed) with no other process holding its lock.

    The lock is an OS file lock (``flock``) on ``folder/.pocketsam.lock``, so it is released
    when its process ends in any way, SIGKILL included: a lock is never stale. The lock
    file is removed on exit, and so is ``folder`` itself if this call created it and
    nothing was written there.

    Args:
        what: the kind of process, for the message (e.g. "`pocketsam everything` run").
    Raises:
        InputError: another process holds the lock ("in use"), or the folder cannot be
            created.
    """
    dest = Path(folder)
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(dest, exc) from None
    path = dest / LOCK_NAME
    fd = None
    try:
        while fd is None:  # the file may be unlinked by its previous holder between open and lock
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise _write_error(path, exc) from None
            if not _try_lock(fd):
                try:
                    holder = os.read(fd, 32).decode("ascii", "replace").strip()
                except OSError:
                    holder = ""
                finally:
                    os.close(fd)
                    fd = None
                pid = f" (pid {holder})" if holder.isdigit() else ""
                raise InputError(
                    f"'{dest}' is in use by another {what}{pid}",
                    "wait for it to finish, or choose another output folder",
                )
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                fd = None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield dest
    finally:
        if fd is not None:
            try:
                os.unlink(path)
            except OSError:
                pass
            os.close(fd)  # releases the lock
            if created:
                try:
                    dest.rmdir()  # only if empty: the run wrote nothing
                except OSError:
                    pass


def _try_lock(fd: int) -> bool:
    """An exclusive, non-blocking OS lock on ``fd``; False if another process holds one."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks: go on unlocked rather than refuse
        return True


@contextmanager
def atomic_write(path: PathLike, mode: str = "wb", encoding: str | None = None, fsync: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on clean exit, move it over ``path``.

    The temporary file lives in the same directory (so ``os.replace`` is atomic), is
    created with the usual umask-derived permissions, is flushed and fsync'ed before the
    rename, and is removed if the block raises. The parent directory must exist.

    Args:
        path: destination file.
        mode: ``"wb"`` or ``"w"``.
        encoding: text encoding for ``mode="w"`` (default UTF-8).
        fsync: flush to disk before the rename (off for data that can be regenerated, where
            an fsync per file would dominate the run time).
    Yields:
        the open temporary file.
    Raises:
        InputError: the destination cannot be written (missing directory, permission
            denied, disk full, destination is a directory...).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        except OSError as exc:
            raise _write_error(Path(path), exc) from None
        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        with f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name rather than a
    file object (``torch.onnx.export``, ``onnx.save``, ONNX Runtime's quantiser); on clean
    exit it is moved over ``path``, on error removed. Same naming as :func:`atomic_write`,
    so :func:`remove_stale_temporaries` sweeps what a killed process left.

    Raises:
        InputError: the destination cannot be written.
    """
    dest = Path(path)
    tmp = dest.with_name(_temporary_name(dest.name))
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _write_error(dest, exc) from None
        raise


def _write_error(dest: Path, exc: OSError) -> InputError:
    reason = exc.strerror or str(exc)
    if dest.is_dir():
        reason = "it is a directory"
    return InputError(
        f"cannot write '{dest}': {reason}",
        "check that the output directory exists and is writable",
    )


def write_bytes_atomic(data: bytes, path: PathLike, fsync: bool = True) -> None:
    """Atomically replace ``path`` with ``data`` (``fsync``: see :func:`atomic_write`)."""
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)


def write_text_atomic(text: str, path: PathLike, encoding: str = "utf-8") -> None:
    """Atomically replace ``path`` with ``text``."""
    with atomic_write(path, "w", encoding=encoding) as f:
        f.write(text)


def read_json(path: PathLike, what: str = "JSON file", max_depth: int | None = None) -> Any:
    """Parse a JSON file (:func:`loads_json`: nesting bounded by ``max_depth``, default
    :data:`MAX_JSON_DEPTH`); every failure is one :class:`InputError` naming ``what`` and the file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} '{p}' does not exist", "check the path") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} '{p}': {exc}", "check the file") from None
    return loads_json(data, f"'{p}'", max_depth=max_depth)


#: The deepest nesting of arrays and objects that :func:`loads_json` (and so every JSON file
#: or request pocketsam reads) accepts. COCO files need 4; the bound keeps a hostile
#: ``[[[[…`` from exhausting the recursion limit, here or in code that walks the result.
MAX_JSON_DEPTH = 64

_JSON_KEEP = b'"[]{}'
_JSON_DROP = bytes(b for b in range(256) if b not in _JSON_KEEP)


def json_depth(data: str | bytes) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text, brackets inside strings not counted
    (0 for a bare number or string). Runs at C speed on any size of text: escapes are
    removed, then everything but quotes and brackets, then the (now quote-free) strings."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    # In JSON a backslash only occurs in strings and always starts a two-character escape,
    # so removing backslash pairs left to right, then backslash-quote pairs, leaves no
    # escaped quote behind.
    raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _JSON_DROP)
    brackets = np.frombuffer(re.sub(rb'"[^"]*"?', b"", raw), np.uint8)
    if not brackets.size:
        return 0
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1).astype(np.int32)
    return max(0, int(np.cumsum(steps).max()))


def loads_json(data: str | bytes, what: str = "the JSON text", max_depth: int | None = None) -> Any:
    """``json.loads`` with the nesting bounded (``max_depth``, default :data:`MAX_JSON_DEPTH`)
    and every failure one :class:`InputError` naming ``what``: not UTF-8, not JSON (with line
    and column), nested too deeply, an integer too long to convert.

    Raises:
        InputError: as above.
    """
    limit = MAX_JSON_DEPTH if max_depth is None else int(max_depth)
    depth = json_depth(data)
    if depth > limit:
        raise InputError(f"{what} nests arrays/objects {depth} levels deep; at most {limit} are accepted",
                         "give the structure the documented format describes")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                         "fix the file") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text", "save it as UTF-8 JSON") from None
    except (ValueError, RecursionError) as exc:  # e.g. Python's limit on digits of an integer
        raise InputError(f"{what} cannot be read as JSON ({exc})", "fix the file") from None


def cache_root(*parts: str) -> Path:
    """pocketsam's cache folder (or a sub-folder of it): ``$POCKETSAM_CACHE``, else
    ``$XDG_CACHE_HOME/pocketsam``, else ``~/.cache/pocketsam``. The one place that decides it
    (ONNX exports, int8 copies, fast-mode measurements, the web app, downloaded weights)."""
    root = os.environ.get("POCKETSAM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pocketsam")
    return Path(root).joinpath(*parts)


_SHA_MEMO: dict[tuple, str] = {}


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (any size of file, little memory).

    Remembered per process for as long as the file's path, size and modification time stay
    the same, so a checkpoint that several steps identify is read and hashed once.

    Raises:
        InputError: the file cannot be read.
    """
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
        if key in _SHA_MEMO:
            return _SHA_MEMO[key]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk_size):
                h.update(block)
    except OSError as exc:
        raise InputError(f"cannot read '{path}': {exc.strerror or exc}", "check the file") from None
    _SHA_MEMO[key] = digest = h.hexdigest()
    return digest


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json_atomic(obj: Any, path: PathLike, indent: int | None = 2) -> None:
    """Atomically write ``obj`` as JSON (UTF-8, trailing newline).

    numpy scalars/arrays and paths are converted; NaN/inf are rejected (``ValueError``)
    because they are not valid JSON.
    """
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=False)
    write_text_atomic(text + "\n", path)


@contextmanager
def replace_files_together(
    out_dir: PathLike, last: tuple[str, ...] = (), stale: Callable[[str], bool] | None = None
) -> Iterator[Path]:
    """Replace a set of output files in ``out_dir`` as a whole, never partly.

    Yields an empty staging folder beside ``out_dir``: write the new files there (plain
    writes are fine). If the block raises, the staging folder is deleted and ``out_dir``
    is untouched. On clean exit the files are moved into ``out_dir`` (created if needed)
    with ``os.replace`` (no copying, nothing left to fail but the renames), the names in
    ``last`` after the others (e.g. an index that refers to the rest); then the files of
    ``out_dir`` for which ``stale(name)`` is true and that were not just written (outputs
    of an earlier run) are deleted. Other files in ``out_dir`` are kept. Staging folders
    for ``out_dir`` that a killed process left are deleted first
    (:func:`remove_stale_staging`); the stage holds a lock file while it is in use.

    Raises:
        InputError: ``out_dir`` or the staging folder cannot be created or written.
    """
    dest = Path(out_dir)
    stage = dest.with_name(_temporary_name(dest.name))
    remove_stale_staging(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir()
    except OSError as exc:
        raise _write_error(dest, exc) from None
    try:
        held = _hold_stage(stage)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise _write_error(dest, exc) from None
    try:
        yield stage
        new = sorted(p.name for p in stage.iterdir() if p.name != LOCK_NAME)
        try:
            dest.mkdir(exist_ok=True)
            for name in sorted(new, key=lambda n: last.index(n) + 1 if n in last else 0):
                os.replace(stage / name, dest / name)
        except OSError as exc:
            raise _write_error(dest, exc) from None
        if stale is not None:
            for p in dest.iterdir():
                if p.name not in new and stale(p.name) and p.is_file():
                    p.unlink(missing_ok=True)
    finally:
        os.close(held)  # first: Windows cannot delete an open file
        shutil.rmtree(stage, ignore_errors=True)


#: How old a staging folder without a held lock file must be to count as left by a killed
#: process (the lock file is created right after the folder; only a process killed in
#: between, or a pocketsam from before staging locks, leaves one without).
STALE_STAGING_S = 60.0


def _hold_stage(stage: Path) -> int:
    """Hold an OS lock on ``stage/.pocketsam.lock`` while the stage is being filled, so
    that :func:`remove_stale_staging` in another process can tell it is alive. Returns
    the descriptor (closing it releases the lock)."""
    fd = os.open(stage / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    _try_lock(fd)
    return fd


def remove_stale_staging(dest: PathLike) -> int:
    """Delete the staging folders of :func:`replace_files_together` for ``dest``
    (``.NAME.<12 hex>.tmp`` beside it) that a killed process left: those whose lock is
    not held (its process is gone), and old ones without a lock file. A staging folder of
    a run still going on is kept. Called by :func:`replace_files_together` itself, so the
    next run of any command that writes through it (``quantize``, ``segment``,
    ``everything``) sweeps what a killed one left.

    Returns:
        how many were removed.
    """
    dest = Path(dest)
    pattern = re.compile(re.escape("." + dest.name) + r"\.[0-9a-f]{12}\.tmp")
    removed = 0
    try:
        entries = [e for e in os.scandir(dest.parent if str(dest.parent) else ".")
                   if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return 0
    for e in entries:
        lock = Path(e.path) / LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            try:
                stale = time.time() - os.stat(e.path).st_mtime > STALE_STAGING_S
            except OSError:
                continue
        except OSError:
            continue
        else:
            try:
                stale = _try_lock(fd)  # we got it: nobody holds it any more
            finally:
                os.close(fd)
        if stale:
            shutil.rmtree(e.path, ignore_errors=True)
            removed += not os.path.exists(e.path)
    return removed


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (and SIGHUP) raise :class:`KeyboardInterrupt` as Ctrl-C
    does, so ``finally`` blocks and context managers run: locks are released and removed,
    staging folders deleted. Python's default for SIGTERM ends the process at once and
    leaves them behind. Outside the main thread (where handlers cannot be set) it does
    nothing; the previous handlers come back on exit."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), interrupt) for n in names}
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), handler)


def to_pil(image: np.ndarray | Image.Image) -> Image.Image:
    """PIL image from an array: H×W bool (→ 0/255 ``L``), H×W uint8 (``L``), H×W×3 (``RGB``)
    or H×W×4 (``RGBA``) uint8. PIL images pass through unchanged."""
    if isinstance(image, Image.Image):
        return image
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:
        raise ValueError(f"expected a bool or uint8 array, got dtype {a.dtype}")
    if a.ndim == 2:
        return Image.fromarray(a)  # uint8 2-D → mode "L"
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(a))
    raise ValueError(f"expected an HxW, HxWx3 or HxWx4 array, got shape {a.shape}")


def save_png_atomic(image: np.ndarray | Image.Image, path: PathLike) -> None:
    """Atomically write an image as PNG.

    Args:
        image: PIL image, or array — H×W bool (a mask: white on black), H×W uint8,
            H×W×3 / H×W×4 uint8.
        path: destination (the ``.png`` suffix is not enforced; the format always is PNG).
    """
    pil = to_pil(image)
    with atomic_write(path, "wb") as f:
        pil.save(f, format="PNG")


# --------------------------------------------------------------------------- folders

#: File endings read as images when a folder is given.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def list_images(folder: PathLike) -> list[Path]:
    """The image files directly inside ``folder`` (by ending, case-insensitive), sorted."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
