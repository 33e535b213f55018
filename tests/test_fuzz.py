"""Fuzz-style robustness (issue #18): seeded, generated malformed prompts, images,
detection files and checkpoints through the CLI (``pocketsam.cli.main``) and the library.

Every CLI case must end with exit status 0, or 2 with exactly one ``error:`` line (plus
``warning:`` lines), never a traceback; every library call must return a result or raise a
:class:`~pocketsam.errors.PocketSamError`. No case may leave a partial output: no
temporary file, no lock, no output folder after a failure, and after a success the
outputs the command promises, consistent with each other.

The model is ``pocketsam_nano`` at a 64² input on one thread, so a case that loads it
costs ~0.1-0.3 s; the ~300 cases (165 through the CLI) take ~25 s on two busy cores.
``POCKETSAM_FUZZ_SEED=N`` runs other cases.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pocketsam.cli import main
from pocketsam.errors import PocketSamError
from pocketsam.io import LOCK_NAME, TEMPORARY_NAME

SEED = int(os.environ.get("POCKETSAM_FUZZ_SEED", 18))  # another seed explores other cases
BUDGET_S = 120  # a hard stop on a busy machine; uncontended the whole file takes ~30 s


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    from pocketsam.checkpoints import export_state_dict, save_checkpoint
    from pocketsam.models import MODEL_CONFIGS, create_model

    torch.manual_seed(0)
    model = create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)).eval()
    folder = tmp_path_factory.mktemp("models")
    save_checkpoint(model, folder / "nano64.safetensors")
    return model, export_state_dict(model), folder / "nano64.safetensors"


def _png(h: int, w: int, rng: np.random.Generator, mode: str = "RGB") -> bytes:
    a = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(a)
    if mode == "I;16":
        im = Image.fromarray((a[..., 0].astype(np.uint16) * 257))
    elif mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header declares w×h pixels (a decompression bomb's first bytes)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


class Leftovers:
    """Asserts that nothing half-written is left under a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def check(self, what: str) -> None:
        bad = [str(p.relative_to(self.root)) for p in self.root.rglob("*")
               if TEMPORARY_NAME.fullmatch(p.name) or p.name == LOCK_NAME or ".tmp" in p.name]
        assert not bad, f"{what}: left {bad}"


SEEN: list[tuple[str, int, str]] = []  # (what, rc, first error line): printed with -s for a look at coverage


def _run_cli(argv: list[str], capsys, what: str) -> int:
    with warnings.catch_warnings(record=True) as caught:  # pocketsam's own become 'warning:' lines
        warnings.simplefilter("always")
        rc = main(argv)
    cap = capsys.readouterr()
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # Python hides these
    stray = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, hidden)]
    assert not stray, f"{what}: warnings that would reach the user as Python warnings: {stray}"
    assert "Traceback" not in cap.err + cap.out, f"{what}: {cap.err[-2000:]}"
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    others = [ln for ln in lines if not ln.startswith(("error: ", "warning: "))]
    assert not others, f"{what}: unexpected stderr {others}"
    if rc == 2:
        assert len(errors) == 1, f"{what}: rc 2 with {errors}"
    else:
        assert rc == 0 and not errors, f"{what}: rc {rc}, {cap.err[-1000:]}"
    SEEN.append((what.split()[0], rc, errors[0][:90] if errors else ""))
    return rc


def _check_segment_output(out: Path, rc: int, what: str) -> None:
    if rc != 0:
        assert not out.exists(), f"{what}: failed but wrote {sorted(p.name for p in out.iterdir())}"
        return
    doc = json.loads((out / "masks.json").read_text())
    pngs = sorted(p.name for p in out.glob("mask_*.png"))
    assert len(pngs) == len(doc["masks"]) > 0, what
    assert (out / "overlay.png").is_file(), what


def _check_everything_output(out: Path, stem: str, rc: int, what: str) -> None:
    if rc != 0:
        assert not out.exists() or not any(out.rglob("annotations.json")), f"{what}: failed but wrote results"
        return
    doc = json.loads((out / stem / "annotations.json").read_text())
    assert isinstance(doc["annotations"], list) and (out / stem / "overlay.png").is_file(), what


# ----------------------------------------------------------------------- generators
def _pick(rng: np.random.Generator, *options):
    """One of ``options`` as it is (``rng.choice`` would turn a mixed list into strings)."""
    return options[int(rng.integers(len(options)))]


def _number(rng: np.random.Generator) -> str:
    return str(rng.choice(["5", "0", "-1", "63.5", "1e3", "nan", "inf", "-inf", "1e400", "1e-300", "x", "", " 7 ",
                           "0x10", "3,", "++1", ".5", "5.", "1_0", "２"]))


def _point_arg(rng: np.random.Generator) -> str:
    n = int(rng.choice([1, 2, 2, 2, 3, 3, 4]))
    parts = [_number(rng) if rng.random() < 0.3 else str(int(rng.integers(-5, 45))) for _ in range(n)]
    if n == 3 and rng.random() < 0.6:
        parts[2] = str(rng.choice(["0", "1", "2", "-1", "1.0", "a"]))
    return ",".join(parts)


def _box_arg(rng: np.random.Generator) -> str:
    n = int(rng.choice([3, 4, 4, 4, 4, 5]))
    parts = [_number(rng) if rng.random() < 0.2 else str(int(rng.integers(-5, 45))) for _ in range(n)]
    return ",".join(parts)


def _detection_entry(rng: np.random.Generator) -> object:
    def pick(*xs):
        return _pick(rng, *xs)

    entry = {
        "image_id": pick(7, 7, 7, "7", 7.5, [7], None, -1, 10**30, True),
        "bbox": pick([1, 2, 10, 8], [0, 0, 30, 20], [1, 2, 10], [float("nan"), 1, 2, 3], [1, 1, -5, 3], "x",
                     [1e308, 1e308, 1e308, 1e308], [3, 3, 0, 0], None),
        "score": pick(0.9, 0.5, 1, float("nan"), "a", None, -1, 2.5, float("inf")),
        "category_id": pick(1, 1, "a", None, 1.5, [1]),
    }
    for key in list(entry):
        if rng.random() < 0.1:
            del entry[key]
    return entry if rng.random() > 0.05 else pick("entry", 3, None, [])


def _detections_file(rng: np.random.Generator) -> bytes:
    kind = int(rng.integers(10))
    entries = [_detection_entry(rng) for _ in range(int(rng.integers(0, 4)))]
    if kind == 0:
        return bytes(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8))
    if kind == 1:
        return b"[{\"image_id\": 7, \"bbox\": [1, 2"
    if kind == 2:
        return json.dumps({"annotations": entries, "images": [{"id": 7, "file_name": "7.png"}]}).encode()
    if kind == 3:
        return json.dumps(_pick(rng, "a", 3, None, {}, {"annotations": 5})).encode() if rng.random() < 0.9 else b""
    return json.dumps(entries).encode()  # json writes NaN/Infinity, which Python's reader accepts


def _mutated_checkpoint(rng: np.random.Generator, state: dict, path: Path) -> Path:
    """One malformed variant of a good state_dict, written to ``path`` (suffix chosen here)."""
    sd = dict(state)
    keys = sorted(k for k in sd if not k.startswith("pocketsam."))
    key = keys[int(rng.integers(len(keys)))]
    kind = int(rng.integers(12))
    if kind == 0:
        del sd[key]
    elif kind == 1:
        sd["image_encoder.extra.weight"] = torch.zeros(3)
    elif kind == 2:
        shape = list(sd[key].shape) or [1]
        shape[int(rng.integers(len(shape)))] += int(rng.integers(1, 40))
        sd[key] = torch.zeros(shape)
    elif kind == 3:  # declares billions of values, stores (almost) none
        shape = (int(rng.integers(10**4, 10**6)), int(rng.integers(10**4, 10**6)))
        if rng.random() < 0.7:
            sd[key] = torch.zeros(1).expand(*shape)
        else:
            sd[key] = torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), shape,
                                              check_invariants=True)
    elif kind == 4:
        t = sd[key].clone().float()
        t.view(-1)[0] = float(rng.choice([np.nan, np.inf, -np.inf]))
        sd[key] = t
    elif kind == 5:
        meta = str(rng.choice(["img_size", "transformer_num_heads", "layer0_heads", "layer0_window", "multimask_only",
                               "everything.pred_iou_thresh", "everything.high_score_thresh"]))
        value = _pick(rng, 10**9, -3, 0, 7, 65, 100000, 1.5, float("nan"), "vec", "bool")
        if value == "vec":
            sd["pocketsam." + meta] = torch.zeros(int(rng.integers(2, 5)))
        elif value == "bool":
            sd["pocketsam." + meta] = torch.tensor(True)
        else:
            sd["pocketsam." + meta] = torch.tensor(float(value) if isinstance(value, float) else int(value))
    elif kind == 6:
        sd[key] = sd[key].to(_pick(rng, torch.int64, torch.float16, torch.bool, torch.complex64))
    elif kind == 7:
        sd[key] = sd[key].reshape(-1)  # wrong rank
    elif kind == 8:
        sd = {"model": [1, 2, 3]} if rng.random() < 0.5 else {}
    if kind in (3,) or rng.random() < 0.5:
        path = path.with_suffix(".pt")
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file

        path = path.with_suffix(".safetensors")
        try:
            save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        except Exception:  # noqa: BLE001 — e.g. an empty dict or a list: torch.save it instead
            path = path.with_suffix(".pt")
            torch.save(sd, path)
    if kind == 9:  # damaged bytes
        data = bytearray(path.read_bytes())
        cut = int(rng.integers(0, len(data)))
        path.write_bytes(bytes(data[:cut]))
    elif kind == 10:
        data = bytearray(path.read_bytes())
        for i in rng.integers(0, len(data), 8):
            data[int(i)] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == 11:
        path.write_bytes(_pick(rng, b"", b"{}", b"\x80\x04\x95junk", pickle.dumps({"a": 1}),
                               b"cos\nsystem\n(S'echo pwned'\ntR.", b"PK\x03\x04garbage"))
    return path


def _image_file(rng: np.random.Generator, folder: Path, name: str) -> Path:
    kind = int(rng.integers(11))
    path = folder / name
    if kind <= 3:
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        if kind == 3:  # very elongated: resizes to a single row or column
            h, w = _pick(rng, (1, 300), (300, 2), (2, 1000))
        path.write_bytes(_png(h, w, rng, str(rng.choice(["RGB", "L", "RGBA", "P", "I;16", "1", "LA"]))))
    elif kind == 4:
        path.write_bytes(_png(20, 30, rng)[: int(rng.integers(8, 60))])  # truncated
    elif kind == 5:
        path.write_bytes(bytes(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8)))
    elif kind == 6:
        path.write_bytes(_png_header_only(int(rng.integers(20000, 2**31 - 1)), int(rng.integers(20000, 2**31 - 1))))
    elif kind == 7:
        path.write_bytes(b"")
    elif kind == 8:
        path.mkdir()
    elif kind == 9:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)).save(buf, format="JPEG")
        path.write_bytes(buf.getvalue())
    else:
        buf = io.BytesIO()
        frames = [Image.fromarray(rng.integers(0, 255, (9, 12), dtype=np.uint8), "L") for _ in range(2)]
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
        path.write_bytes(buf.getvalue())
    return path


# ---------------------------------------------------------------------------- tests
def test_cli_never_shows_a_traceback_nor_leaves_partial_outputs(tmp_path, model_files, capsys):
    _, state, ckpt = model_files
    rng = np.random.default_rng(SEED)
    leftovers = Leftovers(tmp_path)
    good = tmp_path / "good.png"
    good.write_bytes(_png(30, 40, rng))
    t0 = time.perf_counter()
    counts = dict(prompts=0, images=0, detections=0, checkpoints=0)

    def case(i: int) -> Path:
        d = tmp_path / f"case{i:03d}"
        d.mkdir()
        return d

    i = 0
    for _ in range(60):  # prompts
        d, i = case(i), i + 1
        argv = ["segment", str(good), "--checkpoint", str(ckpt), "--out", str(d / "out")]
        for _ in range(int(rng.integers(0, 3))):
            argv += [f"--point={_point_arg(rng)}"]
        for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.5 else 0):
            argv += [f"--box={_box_arg(rng)}"]
        if rng.random() < 0.3:
            argv += ["--multimask"]
        what = f"prompts {argv[6:]}"
        _check_segment_output(d / "out", _run_cli(argv, capsys, what), what)
        leftovers.check(what)
        counts["prompts"] += 1
    for _ in range(35):  # images, through segment and everything
        d, i = case(i), i + 1
        img = _image_file(rng, d, str(rng.choice(["a.png", "b.jpg", "c.gif", "d.tif"])))
        if rng.random() < 0.5:
            argv = ["segment", str(img), "--checkpoint", str(ckpt), "--point", "0,0", "--out", str(d / "out")]
            _check_segment_output(d / "out", _run_cli(argv, capsys, f"image {img.name}"), f"image {img.name}")
        else:
            argv = ["everything", str(img), "--checkpoint", str(ckpt), "--points-per-side", "2",
                    "--pred-iou-thresh", "-100", "--stability-score-thresh", "0", "--out", str(d / "out")]
            rc = _run_cli(argv, capsys, f"everything image {img.name}")
            _check_everything_output(d / "out", img.stem, rc, f"everything image {img.name}")
        leftovers.check(f"image {img}")
        counts["images"] += 1
    for _ in range(35):  # detection files
        d, i = case(i), i + 1
        (d / "7.png").write_bytes(_png(24, 32, rng))
        det = d / "det.json"
        det.write_bytes(_detections_file(rng))
        argv = ["everything", str(d / "7.png"), "--checkpoint", str(ckpt), "--mode", "boxes", "--boxes", str(det),
                "--box-score-thresh", "0", "--out", str(d / "out")]
        what = f"detections {det.read_bytes()[:200]!r}"
        _check_everything_output(d / "out", "7", _run_cli(argv, capsys, what), what)
        leftovers.check(what)
        counts["detections"] += 1
    for _ in range(35):  # checkpoints
        if time.perf_counter() - t0 > BUDGET_S:
            break
        d, i = case(i), i + 1
        bad = _mutated_checkpoint(rng, state, d / "bad")
        argv = ["segment", str(good), "--checkpoint", str(bad), "--point", "10,10", "--out", str(d / "out")]
        _check_segment_output(d / "out", _run_cli(argv, capsys, f"checkpoint {bad.name}"), f"checkpoint case {i}")
        leftovers.check(f"checkpoint case {i}")
        counts["checkpoints"] += 1
    assert counts["checkpoints"] >= 10, counts
    for line in sorted(set(SEEN)):
        print(*line, sep=" | ")
    for kind in ("prompts", "image", "everything", "detections", "checkpoint"):  # both outcomes were exercised
        assert {rc for k, rc, _ in SEEN if k == kind} == {0, 2}, kind


def test_library_raises_only_pocketsam_errors(tmp_path, model_files):
    from pocketsam import SamPredictor, build_sam
    from pocketsam.everything import GENERATORS

    model, state, _ = model_files
    rng = np.random.default_rng(SEED + 1)
    predictor = SamPredictor(model)
    predictor.set_image(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))

    def values(shape_choices, bad=True):
        shape = shape_choices[int(rng.integers(len(shape_choices)))]
        a = rng.uniform(-10, 50, shape)
        if bad and rng.random() < 0.3 and a.size:
            a.flat[int(rng.integers(a.size))] = rng.choice([np.nan, np.inf, -np.inf, 1e308])
        r = rng.random()
        return a.tolist() if r < 0.3 else ("junk" if r < 0.35 else None if r < 0.4 else a)

    outcomes: dict[str, set[str]] = {}
    group = ""

    def call(fn, *args, **kwargs):
        try:
            result = fn(*args, **kwargs)
        except PocketSamError:
            outcomes.setdefault(group, set()).add("error")
            return None
        outcomes.setdefault(group, set()).add("result")
        return result

    group = "predict"
    for _ in range(60):  # predict
        kwargs = {"point_coords": values([(1, 2), (3, 2), (2,), (1, 3), (2, 3), (0, 2), (4,)]),
                  "point_labels": values([(1,), (3,), (2,), (0,)], bad=False),
                  "box": values([(4,), (1, 4), (2, 4), (3,)]) if rng.random() < 0.4 else None,
                  "mask_input": values([(1, 16, 16), (1, 8, 8), (16, 16)]) if rng.random() < 0.2 else None,
                  "multimask_output": bool(rng.random() < 0.5)}
        coords = kwargs["point_coords"]
        if rng.random() < 0.6 and isinstance(coords, (list, np.ndarray)):  # mostly plausible labels: 0/1, some -1..3
            n = len(np.asarray(coords, dtype=object).reshape(-1, 2) if np.size(coords) % 2 == 0 else coords)
            kwargs["point_labels"] = rng.integers(0, 2, n) if rng.random() < 0.8 else rng.integers(-1, 4, n)
        out = call(predictor.predict, **kwargs)
        if out is not None:
            masks, scores, low = out
            assert np.isfinite(scores).all() and masks.shape[1:] == (30, 40), kwargs
    group = "predict_torch"
    for _ in range(40):  # predict_torch
        b, n = int(rng.integers(1, 4)), int(rng.integers(0, 4))
        coords = torch.as_tensor(rng.uniform(-5, 70, (int(rng.choice([b, b, b + 1])), n, int(rng.choice([2, 2, 3])))))
        if rng.random() < 0.2 and coords.numel():
            coords.view(-1)[0] = float("nan")
        labels = torch.as_tensor(rng.integers(-2, 5, (b, int(rng.choice([n, n, n + 1])))))
        boxes = torch.as_tensor(rng.uniform(0, 64, (int(rng.choice([b, b + 1])), 4))) if rng.random() < 0.4 else None
        points = (coords, labels) if n or rng.random() < 0.5 else None
        out = call(predictor.predict_low_res if rng.random() < 0.3 else
                   lambda p, bx, m, mm: predictor.predict_torch(*(p or (None, None)), boxes=bx, mask_input=m,
                                                                multimask_output=mm),
                   points, boxes, None, bool(rng.random() < 0.5))
        if out is not None:
            assert all(bool(torch.isfinite(t.float()).all()) for t in out if t.dtype != torch.bool)
    group = "generators"
    for _ in range(15):  # generators on odd arrays
        mode = str(rng.choice(["grid", "hierarchical", "boxes"]))
        shape = _pick(rng, (20, 30, 3), (20, 30, 3), (20, 30, 3), (1, 1, 3), (1, 300, 3), (20, 30), (20, 30, 4),
                      (20, 30, 1), (0, 5, 3))
        dtype = _pick(rng, np.uint8, np.uint8, np.uint8, np.float32, np.int64, bool)
        image = rng.integers(0, 255, shape).astype(dtype)
        kwargs = {"proposals": np.array([[1.0, 1, 9, 9]])} if mode == "boxes" else {"points_per_side": 2}
        records = call(GENERATORS[mode](model, pred_iou_thresh=-100, stability_score_thresh=0, **kwargs).generate, image)
        assert records is None or isinstance(records, list)
    group = "build_sam"
    for k in range(15):  # checkpoints through build_sam
        path = _mutated_checkpoint(rng, state, tmp_path / f"lib{k}")
        call(build_sam, checkpoint=path)
    assert not [p for p in tmp_path.rglob("*") if TEMPORARY_NAME.fullmatch(p.name)]
    assert outcomes == {g: {"error", "result"} for g in ("predict", "predict_torch", "generators", "build_sam")}


# ------------------------------------------- issue 24: every image size, every mode
SIZE_CASES = int(os.environ.get("POCKETSAM_FUZZ_SIZE_CASES", 20))  # a longer run: e.g. 500
MAX_PIXELS = 4096  # --max-pixels for these cases: "up to the pixel limit" stays cheap
CASE_BUDGET_S = 30.0  # one case on two busy cores; uncontended a case takes ~0.2-2 s


def _size(rng: np.random.Generator) -> tuple[int, int]:
    """1×1 up to a little past :data:`MAX_PIXELS`, log-uniform in area, any aspect ratio."""
    kind = int(rng.integers(6))
    if kind == 0:
        return _pick(rng, (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (1, 3))
    if kind == 1:  # a single row or column, up to the limit
        n = int(np.exp(rng.uniform(0, np.log(MAX_PIXELS * 1.2))))
        return _pick(rng, (1, n), (n, 1))
    area = np.exp(rng.uniform(0, np.log(MAX_PIXELS * 1.3)))
    aspect = np.exp(rng.uniform(-2, 2))
    h = max(1, int(round(np.sqrt(area * aspect))))
    return h, max(1, int(round(area / h)))


def _result_folders_are_whole(out: Path, what: str) -> int:
    """Every per-image folder holds both files or none; every result is strict JSON (no
    NaN) whose masks have pixels. Returns the number of results."""
    n = 0
    for d in sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []:
        names = sorted(p.name for p in d.iterdir())
        assert names in ([], ["annotations.json", "overlay.png"]), f"{what}: {d.name} holds {names}"
        if names:
            doc = json.loads((d / "annotations.json").read_text(), parse_constant=lambda c: pytest.fail(f"{what}: {c}"))
            assert all(a["area"] > 0 for a in doc["annotations"]), what
            n += 1
    return n


def test_everything_on_every_image_size_in_every_mode(tmp_path, model_files, capsys):
    """Images from 1×1 to past the pixel limit, in every everything mode, alone and in
    folders (#24): no traceback, an image within the limit always gets its two files (an
    empty result is a result), one past the limit none (a single image: one error line; in
    a folder: a 'failed' line while the others finish), no lock or staging left, bounded
    time per case."""
    _, _, ckpt = model_files
    rng = np.random.default_rng(SEED + 24)
    leftovers = Leftovers(tmp_path)
    seen: set[tuple[str, str]] = set()
    for i in range(SIZE_CASES):
        d = tmp_path / f"size{i:03d}"
        (d / "in").mkdir(parents=True)
        mode = str(rng.choice(["grid", "hierarchical", "boxes"]))
        sizes = [_size(rng) for _ in range(int(_pick(rng, 1, 1, 2, 3)))]
        files = []
        for k, (h, w) in enumerate(sizes):
            files.append(d / "in" / f"{k}.png")
            files[-1].write_bytes(_png(h, w, rng, str(rng.choice(["RGB", "L", "RGBA"]))))
        argv = ["everything", str(files[0] if len(files) == 1 else d / "in"), "--checkpoint", str(ckpt),
                "--mode", mode, "--max-pixels", str(MAX_PIXELS), "--out", str(d / "out"),
                "--pred-iou-thresh", str(_pick(rng, -100, 0.0, 0.5)), "--stability-score-thresh", str(_pick(rng, 0.0, 0.5))]
        if mode == "boxes":
            det = d / "det.json"
            det.write_text(json.dumps({
                "images": [{"id": k + 1, "file_name": f.name} for k, f in enumerate(files)],
                "annotations": [{"image_id": k + 1, "score": 0.9,
                                 "bbox": _pick(rng, [0, 0, w, h], [0, 0, 1, 1], [w / 4, h / 4, w / 2, h / 2], [w, h, 3, 3])}
                                for k, (h, w) in enumerate(sizes) for _ in range(int(rng.integers(1, 3)))]}))
            argv += ["--boxes", str(det)]
        else:
            argv += ["--points-per-side", str(_pick(rng, 1, 2, 3)), "--crop-n-layers", str(_pick(rng, 0, 0, 1, 2))]
        if rng.random() < 0.3:
            argv += ["--min-mask-region-area", str(_pick(rng, 1, 5, 100))]
        what = f"sizes {sizes} mode {mode} {argv[8:]}"
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            rc = main(argv)
        cap = capsys.readouterr()
        assert time.perf_counter() - t0 < CASE_BUDGET_S, f"{what}: {time.perf_counter() - t0:.1f} s"
        assert "Traceback" not in cap.err + cap.out, f"{what}: {cap.err[-2000:]}"
        over = [h * w > MAX_PIXELS for h, w in sizes]
        if len(files) == 1:
            assert rc == (2 if over[0] else 0), f"{what}: rc {rc} {cap.err[-500:]}"
            if rc == 2:
                assert [ln for ln in cap.err.splitlines() if ln.startswith("error: ")] and "pixels" in cap.err, what
        else:
            assert rc == (1 if any(over) else 0), f"{what}: rc {rc} {cap.err[-500:]} {cap.out[-500:]}"
            assert cap.out.count("  failed: ") == sum(over), f"{what}: {cap.out}"
        results = _result_folders_are_whole(d / "out", what)
        assert results == sum(not o for o in over), f"{what}: {results} results"
        leftovers.check(what)
        seen.add((mode, "over" if any(over) else "within"))
    if SIZE_CASES >= 20:  # the default run reaches every mode, within and past the limit
        assert {m for m, _ in seen} == {"grid", "hierarchical", "boxes"}, seen
        assert {k for _, k in seen} == {"over", "within"}, seen
