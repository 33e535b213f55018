"""Official weights by name: where they come from, where they are kept, how to get them.

``pocketsam download NAME`` (:func:`download`) fetches one of :data:`KNOWN_WEIGHTS` into
the local weights folder (:func:`weights_dir`); afterwards ``build_sam(checkpoint=NAME)``
and ``--checkpoint NAME`` find it there (:func:`resolve_checkpoint_name`). Nothing is
ever downloaded unless asked: a known name that is not downloaded yet is one error that
says how to get it.

A download

* goes to ``<file>.part`` beside the destination and is renamed to the file's own name
  only once complete and verified, so a file with the official name is always whole;
* resumes a ``.part`` left by an interrupted run (HTTP ``Range``); a server that ignores
  the range sends the whole file again;
* is checked against the published SHA-256 where :data:`KNOWN_WEIGHTS` has one (a
  mismatching download is deleted); where it has none, the SHA-256 of what arrived is
  reported so that it can be compared by hand;
* fails with one :class:`~pocketsam.errors.InputError` line for an HTTP error (404 ...),
  an unreachable server, an interrupted transfer (the ``.part`` is kept for the next
  run) or a mismatch.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from pocketsam.errors import CheckpointError, InputError
from pocketsam.io import loads_json, read_json, sha256_file, write_json_atomic
from pocketsam.version import __version__

#: Environment variable naming the local weights folder.
WEIGHTS_ENV = "POCKETSAM_WEIGHTS"


@dataclass(frozen=True)
class Weights:
    """One official checkpoint.

    Attributes:
        name: what to call it (``pocketsam download NAME``, ``--checkpoint NAME``).
        file_name: the upstream file name, kept locally (a name starting with
            ``tinysam`` gives TinySAM's decoder behaviour).
        url: the upstream download address.
        sha256: the published / independently confirmed SHA-256, or None where none
            could be confirmed (then nothing is verified; see the README table).
        size: the file's size in bytes where known.
        use: what it is good for.
    """

    name: str
    file_name: str
    url: str
    sha256: str | None
    size: int | None
    use: str


KNOWN_WEIGHTS: dict[str, Weights] = {w.name: w for w in (
    Weights("sam_vit_h", "sam_vit_h_4b8939.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2_564_550_879,
            "SAM ViT-H: the most accurate, the slowest (a GPU is advised)"),
    Weights("sam_vit_l", "sam_vit_l_0b3195.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1_249_524_607,
            "SAM ViT-L: nearly ViT-H's quality, half its size"),
    Weights("sam_vit_b", "sam_vit_b_01ec64.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375_042_383,
            "SAM ViT-B: the smallest SAM; a teacher for distillation"),
    Weights("mobile_sam", "mobile_sam.pt",
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f", 40_728_226,
            "MobileSAM (TinyViT encoder): photos on a CPU; MobileSAMv2's boxes mode"),
    Weights("tinysam", "tinysam_42.3.pth",
            "https://github.com/xinghaochen/TinySAM/releases/download/3.0/tinysam_42.3.pth",
            None, None,
            "TinySAM (42.3 COCO AP release): MobileSAM's size, better masks; hierarchical everything"),
)}


def weights_dir() -> Path:
    """The local weights folder: ``$POCKETSAM_WEIGHTS``, else
    ``$XDG_CACHE_HOME/pocketsam/weights``, else ``~/.cache/pocketsam/weights``."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "pocketsam" / "weights"


def lookup(name: str) -> Weights | None:
    """The known weights called ``name`` (or whose file is called ``name``), any case;
    None if there are none."""
    key = str(name).strip().lower().replace("-", "_")
    for w in KNOWN_WEIGHTS.values():
        if key in (w.name, w.file_name.lower()):
            return w
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


#: The name of the model shipped with pocketsam (``--checkpoint bundled``); what a missing
#: checkpoint means everywhere.
BUNDLED = "bundled"

#: One line for wherever the bundled model segments a user's image: what it is, what to use instead.
BUNDLED_NOTE = ("the bundled model was trained on synthetic scenes and does poorly on real photos; for photos run "
                "`pocketsam download mobile_sam`, then use --checkpoint mobile_sam")


#: Where the bundled model lives in the installed package.
ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CHECKPOINT_NAME = "pocketsam_tiny_synth.safetensors"


def default_checkpoint() -> Path:
    """Path of the bundled model (trained by pocketsam on synthetic scenes).

    Raises:
        CheckpointError: this installation has no bundled model.
    """
    path = ASSETS / DEFAULT_CHECKPOINT_NAME
    if not path.exists():
        raise CheckpointError(
            "no checkpoint given and this installation has no bundled model",
            "pass --checkpoint / checkpoint= with a SAM, MobileSAM or TinySAM checkpoint",
        )
    return path


def multimask_only_by_name(checkpoint: str | Path) -> bool:
    """TinySAM's decoder behaviour (never the single-mask token) for a detected
    architecture: a checkpoint file whose name starts with ``tinysam`` (the official
    ``tinysam_*.pth`` files cannot record it)."""
    return Path(checkpoint).name.lower().startswith("tinysam")


def is_bundled(checkpoint: str | Path | None) -> bool:
    """Whether ``checkpoint`` (None, ``"bundled"`` or a path) is the bundled model."""
    try:
        path = resolve_checkpoint_name(BUNDLED if checkpoint is None else checkpoint)
        return Path(path).resolve() == default_checkpoint().resolve()
    except (CheckpointError, OSError):
        return False


def resolve_checkpoint_name(checkpoint: str | Path) -> Path:
    """A checkpoint argument as a path. An existing path is returned as is; ``bundled``
    (:data:`BUNDLED`) is the model shipped with pocketsam; a known name (``mobile_sam``, or
    its file name ``mobile_sam.pt``; no folder part) is the file in :func:`weights_dir`;
    anything else is returned as a path (its reader reports it missing).

    Raises:
        CheckpointError: a known name that is not downloaded yet, saying how to get it; or
            ``bundled`` in an installation without the bundled model.
    """
    path = Path(checkpoint)
    if path.exists() or len(path.parts) != 1:
        return path
    if str(checkpoint).strip().lower() == BUNDLED:
        return default_checkpoint()
    w = lookup(str(checkpoint))
    if w is None:
        return path
    local = weights_dir() / w.file_name
    if local.is_file():
        return local
    raise CheckpointError(
        f"checkpoint '{checkpoint}' names the official {w.name} weights, which are not downloaded "
        f"(looked for '{local}')",
        f"run `pocketsam download {w.name}` ({_size(w.size)}), or pass the path of your copy",
    )


def known_names() -> str:
    return ", ".join(KNOWN_WEIGHTS)


def download(
    name: str,
    directory: str | Path | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download the known weights ``name`` into ``directory`` (default :func:`weights_dir`).

    Returns:
        the path of the complete, verified file (at once if it is already there).
    Raises:
        InputError: an unknown name, an unwritable folder, an HTTP error, an unreachable
            server, an interrupted transfer (resumable: run again) or a SHA-256 mismatch.
    """

    say = log or (lambda line: print(line, file=sys.stderr))
    w = lookup(name)
    if w is None:
        raise InputError(f"no official weights are called '{name}'", f"use one of {known_names()}")
    folder = Path(directory).expanduser() if directory is not None else weights_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the weights folder '{folder}': {exc.strerror or exc}", "pass another --dir") from None
    dest = folder / w.file_name
    if dest.is_file():
        if w.sha256 is not None:
            if sha256_file(dest) == w.sha256:
                return dest
            raise InputError(
                f"'{dest}' exists but is not the official {w.name} file (its SHA-256 differs from {w.sha256[:12]}…)",
                "delete it and run the command again",
            )
        _check_recorded(w, dest)
        return dest
    part = folder / f"{w.file_name}.part"
    _fetch(w, part, dest, timeout, chunk_size, progress, say)
    digest = sha256_file(part)
    if w.sha256 is not None and digest != w.sha256:
        part.unlink(missing_ok=True)
        raise InputError(
            f"the download of {w.name} has SHA-256 {digest[:12]}…, not the published {w.sha256[:12]}… "
            "(the download was deleted)",
            f"run the command again; if it happens again, the file at {w.url} is not the official one",
        )
    if w.sha256 is None:
        # nothing to compare with: at least refuse what cannot be the checkpoint
        size = part.stat().st_size
        why = None
        if w.size is not None and size != w.size:
            why = f"has {size:,} bytes, not {w.size:,}"
        elif not looks_like_checkpoint(part):
            why = "is empty" if size == 0 else "is not a checkpoint (neither a PyTorch zip or pickle file nor safetensors)"
        if why is not None:
            part.unlink(missing_ok=True)
            raise InputError(f"the download of {w.name} from {w.url} {why} (deleted)",
                             f"run the command again; if it happens again, download it by hand and save it as '{dest}'")
    os.replace(part, dest)
    if w.sha256 is None:
        _record(w, dest, digest)
        say(f"warning: no published SHA-256 is known for {w.name}, so it was not verified; "
            f"the downloaded file's SHA-256 is {digest} (recorded in '{record_path(dest)}'; later runs check it)")
    return dest


#: The first bytes of the files a checkpoint can be: a zip archive (``torch.save`` since
#: PyTorch 1.6) or a pickle (older ``torch.save``: protocol 2 to 5).
_CHECKPOINT_MAGIC = (b"PK\x03\x04",) + tuple(b"\x80" + bytes([v]) for v in range(2, 6))


def looks_like_checkpoint(path: Path) -> bool:
    """Whether the file is whole as a checkpoint file can be told to be: a PyTorch zip file
    with its central directory (a cut one has none), an older PyTorch pickle file (its
    first bytes only), or a safetensors file whose header is JSON and whose size is exactly
    what the header describes. Says nothing about the weights themselves (their reader
    checks those, without executing anything)."""
    import zipfile


    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            head = f.read(9)
            if head.startswith(b"PK\x03\x04"):
                return zipfile.is_zipfile(f)
            if head.startswith(_CHECKPOINT_MAGIC):
                return True
            if len(head) < 9 or head[8:9] != b"{":
                return False
            n = int.from_bytes(head[:8], "little")
            if not 2 <= n <= min(size - 8, 100 << 20):
                return False
            f.seek(8)
            header = loads_json(f.read(n), "the safetensors header")
    except (OSError, InputError):
        return False
    ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)] \
        if isinstance(header, dict) else None
    if ends is None or not all(isinstance(e, int) for e in ends):
        return False
    return size == 8 + n + max(ends, default=0)


def record_path(dest: Path) -> Path:
    """Where the size and SHA-256 of a download without a published hash are recorded."""
    return dest.with_name(dest.name + ".sha256.json")


def _record(w: Weights, dest: Path, digest: str) -> None:
    """Remember what the first complete download of weights without a published hash was
    (size, SHA-256, source), so that a later run notices a changed or damaged file."""

    write_json_atomic({"name": w.name, "url": w.url, "size": dest.stat().st_size, "sha256": digest}, record_path(dest))


def _check_recorded(w: Weights, dest: Path) -> None:
    """A file without a published hash that is already there: the same size and SHA-256 as
    recorded when it was downloaded (a file from before such records were kept gets one).

    Raises:
        InputError: it differs from the record, or is no checkpoint at all.
    """

    recorded = record_path(dest)
    record = None
    if recorded.is_file():
        try:
            record = read_json(recorded, "download record")
        except InputError:
            record = None
    digest = sha256_file(dest)
    size = dest.stat().st_size
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        if not looks_like_checkpoint(dest):
            raise InputError(f"'{dest}' is not a checkpoint ({size:,} bytes, neither a PyTorch file nor safetensors)",
                             "delete it and run the command again")
        _record(w, dest, digest)
        return
    if record.get("size") != size or record["sha256"] != digest:
        raise InputError(
            f"'{dest}' has changed since it was downloaded ({size:,} bytes, SHA-256 {digest[:12]}…; recorded "
            f"{record.get('size')!s} bytes, {record['sha256'][:12]}… in '{recorded}')",
            "delete both files and run the command again",
        )


def _fetch(w: Weights, part: Path, dest: Path, timeout: float, chunk_size: int, progress: bool,
           say: Callable[[str], None]) -> None:
    """Bring ``part`` up to the whole file, resuming what it already holds."""

    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"pocketsam/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    by_hand = f"download {w.url} by hand and save it as '{dest}'"
    try:
        response = urllib.request.urlopen(urllib.request.Request(w.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:  # nothing left to send: the .part already holds it all
            return
        reason = " ".join(str(exc.reason).split())  # urllib's redirect-loop reason spans lines
        if 300 <= exc.code < 400:
            reason = "(redirects that never reach the file: a loop, or too many)"
        raise InputError(f"cannot download {w.name}: {w.url} answered HTTP {exc.code} {reason}",
                         f"the file may have moved; {by_hand}") from None
    except (urllib.error.URLError, HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        host = urlparse(w.url).netloc
        raise InputError(f"cannot download {w.name}: cannot reach {host} ({reason})",
                         f"check the network connection and run the command again, or {by_hand}") from None
    with response:
        resumed = bool(have) and response.status == 206
        if resumed and not (response.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
            resumed = False  # a range other than the one asked for: start over rather than splice
            response.close()
            part.unlink(missing_ok=True)
            return _fetch(w, part, dest, timeout, chunk_size, progress, say)
        if not resumed:
            have = 0  # the server sends the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else w.size
        from tqdm import tqdm

        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=w.file_name, disable=not progress, file=sys.stderr)
        got = have
        broken: Exception | None = None
        try:
            with open(part, "ab" if resumed else "wb") as f:
                try:
                    while block := response.read(chunk_size):
                        f.write(block)
                        got += len(block)
                        bar.update(len(block))
                except (HTTPException, OSError) as exc:  # a cut connection, a cut chunked stream, a stall
                    broken = exc
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise InputError(f"cannot write '{part}': {exc.strerror or exc}", "check free space and permissions") from None
        finally:
            bar.close()
    # Without a Content-Length (or a known size) only the connection's own error tells a cut
    # transfer from a complete one, so any error while reading means "incomplete".
    if broken is not None or (total is not None and got < total):
        of = f"{got:,} of {total:,} bytes" if total is not None else f"{got:,} bytes"
        why = f", no data for {timeout:g} s" if isinstance(broken, TimeoutError) else ""
        raise InputError(
            f"the download of {w.name} was interrupted after {of}{why} (kept in '{part}')",
            "run the same command again to resume it",
        )
