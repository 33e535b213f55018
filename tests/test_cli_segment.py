"""``pocketsam segment``: end to end with the golden vit_t checkpoint, and every bad input.

The happy path runs the model twice (once as a real subprocess, once in-process), shared
through a module-scoped fixture. Error cases run in-process and must fail before any model
is built: the ``no_model`` fixture makes building one an immediate test failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pocketsam.cli import main
from pocketsam.masks import decode_rle, mask_bbox_xywh

from conftest import FIXTURE_VIT_T, PHOTOS, shared_photo

REPO = Path(__file__).resolve().parents[1]
# a small vit_t-layout checkpoint in the repository (tests/fixtures/golden): the command's
# behaviour does not depend on the model's size, and a fresh clone has it
VIT_T = FIXTURE_VIT_T
DOG = PHOTOS / "dog.jpg"  # 800×534, in ../shared/photos (where present)


def _run_subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("POCKETSAM_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "pocketsam", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _assert_clean_error(rc: int, err: str, out: str = "", match: str | None = None) -> str:
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    if match is not None:
        assert match.lower() in lines[0].lower(), lines[0]
    return lines[0]


# ------------------------------------------------------------------------ happy path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two real runs on dog.jpg: multimask point+box (subprocess), single point (in-process)."""
    shared_photo("dog.jpg", "the end-to-end segment runs on a real 800×534 photo")
    base = tmp_path_factory.mktemp("segment")
    multi_dir = base / "multi"
    proc = _run_subprocess(
        ["segment", str(DOG), "--checkpoint", str(VIT_T), "--point", "330,300", "--point", "600,100,0",
         "--box", "150,120,560,520", "--multimask", "--out", str(multi_dir)],
        cwd=base,
    )
    assert proc.returncode == 0, proc.stderr

    single_dir = base / "single" / "nested"  # parents are created
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["segment", str(DOG), "-c", str(VIT_T), "--point", "330,300", "--out", str(single_dir)])
    assert rc == 0
    return {"multi": (multi_dir, proc.stdout), "single": (single_dir, buf.getvalue())}


def _check_outputs(out_dir: Path, n: int) -> list[dict]:
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted([f"mask_{i}.png" for i in range(n)] + ["overlay.png", "masks.json"])
    doc = json.loads((out_dir / "masks.json").read_text())
    assert doc["image"] == str(DOG)
    records = doc["masks"]
    assert len(records) == n
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True)
    for i, rec in enumerate(records):
        assert set(rec) == {"segmentation", "score", "bbox", "area"}
        mask = decode_rle(rec["segmentation"])
        assert mask.shape == (534, 800) and rec["segmentation"]["size"] == [534, 800]
        png = np.asarray(Image.open(out_dir / f"mask_{i}.png"))
        assert png.dtype == np.uint8 and png.shape == (534, 800)
        assert set(np.unique(png)) <= {0, 255}
        np.testing.assert_array_equal(png == 255, mask)
        assert rec["area"] == int(mask.sum()) > 0
        assert rec["bbox"] == mask_bbox_xywh(mask)
        assert isinstance(rec["score"], float)
    overlay = Image.open(out_dir / "overlay.png")
    assert overlay.size == (800, 534) and overlay.mode == "RGB"
    return records


def test_multimask_point_and_box(runs: dict) -> None:
    out_dir, stdout = runs["multi"]
    records = _check_outputs(out_dir, 3)
    assert "3 masks" in stdout and "2 points" in stdout and "box" in stdout
    assert f"{records[0]['score']:.3f}" in stdout
    # the overlay differs from the photo (mask tinted, prompts drawn)
    overlay = np.asarray(Image.open(out_dir / "overlay.png")).astype(int)
    photo = np.asarray(Image.open(DOG).convert("RGB")).astype(int)
    assert np.abs(overlay - photo).mean() > 1


def test_single_point_single_mask(runs: dict) -> None:
    out_dir, stdout = runs["single"]
    _check_outputs(out_dir, 1)
    assert stdout.startswith("1 mask for 1 point")


def test_stale_masks_from_a_previous_run_are_removed(tmp_path: Path) -> None:
    from pocketsam.cli.segment import Prompts, write_outputs

    image = np.zeros((8, 10, 3), np.uint8)
    masks = np.zeros((3, 8, 10), bool)
    masks[:, 2:5, 3:7] = True
    prompts = Prompts(points=[(4.0, 3.0)], labels=[1])
    write_outputs(tmp_path, "img.png", image, masks, np.array([0.9, 0.5, 0.1]), prompts)
    (tmp_path / "notes.txt").write_text("user file")
    write_outputs(tmp_path, "img.png", image, masks[:1], np.array([0.9]), prompts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask_0.png", "masks.json", "notes.txt", "overlay.png"]


# ------------------------------------------------------------------------ bad inputs


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a model gets built (errors must be caught before that)."""
    import pocketsam.checkpoints.build as ckpt

    def boom(*args, **kwargs):
        raise AssertionError("a model was built, but this error should have been caught before")

    monkeypatch.setattr(ckpt, "create_model", boom)


@pytest.fixture()
def small_png(tmp_path: Path) -> Path:
    path = tmp_path / "small.png"
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(path)
    return path


def _cli_error(capsys: pytest.CaptureFixture, argv: list[str], match: str | None = None) -> str:
    rc = main(argv)
    captured = capsys.readouterr()
    assert captured.out == ""
    return _assert_clean_error(rc, captured.err, captured.out, match)


@pytest.mark.parametrize(
    "prompt_args, match",
    [
        ([], "no prompt"),
        (["--point", "10"], "malformed point '10'"),
        (["--point", "a,b"], "malformed point 'a,b'"),
        (["--point", "1,2,3,4"], "malformed point"),
        (["--point", "nan,3"], "malformed point"),
        (["--point", "1e999,3"], "finite"),
        (["--point", "10,20,2"], "label"),
        (["--point", "10,20,yes"], "label"),
        (["--point", "10,20,0"], "only background"),
        (["--box", "1,2,3"], "malformed box"),
        (["--box", "1,2,3,4,5"], "malformed box"),
        (["--box", "1,2,x,4"], "malformed box"),
        (["--box", "50,10,20,40"], "inverted"),
        (["--box", "10,10,10,40"], "inverted"),
        (["--point", "79.5,10"], None),  # inside: fails later only because of --max-pixels below
        (["--point", "80,10"], "outside the image, which is 80x60"),
        (["--point=-1,10"], "outside the image"),
        (["--point", "10,60"], "outside the image"),
        (["--point", "10,10", "--box", "0,0,81,60"], "box"),
        (["--box=-2,0,40,60"], "outside the image"),
    ],
)
def test_bad_prompts(capsys, no_model, small_png: Path, tmp_path: Path, prompt_args, match) -> None:
    argv = ["segment", str(small_png), "--checkpoint", str(VIT_T), *prompt_args, "--out", str(tmp_path / "o")]
    if match is None:  # a valid prompt: prove the prompt check passed by tripping the next one
        argv += ["--max-pixels", "100"]
        match = "above the limit of 100 pixels"
    _cli_error(capsys, argv, match)
    assert not (tmp_path / "o").exists()  # nothing written on failure


def test_bad_image_files(capsys, no_model, tmp_path: Path) -> None:
    out = str(tmp_path / "o")
    missing = str(tmp_path / "nope.jpg")
    _cli_error(capsys, ["segment", missing, "-c", str(VIT_T), "-p", "1,1", "-o", out], "does not exist")
    _cli_error(capsys, ["segment", str(tmp_path), "-c", str(VIT_T), "-p", "1,1", "-o", out], "directory")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    _cli_error(capsys, ["segment", str(corrupt), "-c", str(VIT_T), "-p", "1,1", "-o", out], "corrupt.jpg")
    text = tmp_path / "photo.png"
    text.write_text("hello")
    _cli_error(capsys, ["segment", str(text), "-c", str(VIT_T), "-p", "1,1", "-o", out], "not an image")
    assert not (tmp_path / "o").exists()


def test_bomb_sized_image(capsys, no_model, small_png: Path, tmp_path: Path) -> None:
    line = _cli_error(
        capsys,
        ["segment", str(small_png), "-c", str(VIT_T), "-p", "1,1", "-o", str(tmp_path / "o"), "--max-pixels", "4000"],
        "80x60",
    )
    assert "--max-pixels 4800" in line
    _cli_error(
        capsys,
        ["segment", str(small_png), "-c", str(VIT_T), "-p", "1,1", "-o", str(tmp_path / "o"), "--max-pixels", "0"],
        "--max-pixels must be positive",
    )


def test_bad_checkpoints(capsys, no_model, small_png: Path, tmp_path: Path) -> None:
    def seg(ckpt: Path | str) -> list[str]:
        return ["segment", str(small_png), "-c", str(ckpt), "-p", "10,10", "-o", str(tmp_path / "o")]

    _cli_error(capsys, seg(tmp_path / "missing.pt"), "does not exist")
    _cli_error(capsys, seg(tmp_path), "directory")
    rand = tmp_path / "random.pt"
    rand.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _cli_error(capsys, seg(rand), "random.pt")
    txt = tmp_path / "model.pth"
    txt.write_text("these are not the weights you are looking for\n")
    _cli_error(capsys, seg(txt), "model.pth")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _cli_error(capsys, seg(empty), "empty")
    import torch

    not_sam = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3)}, not_sam)
    _cli_error(capsys, seg(not_sam), "not a SAM")
    # unknown --model-type and unusable device: also before any model is built
    _cli_error(capsys, [*seg(VIT_T), "--model-type", "vit_zz"], "unknown model type")
    _cli_error(capsys, [*seg(VIT_T), "--device", "banana"], "device")
    assert not (tmp_path / "o").exists()


def test_no_checkpoint(capsys, no_model, monkeypatch, small_png: Path, tmp_path: Path) -> None:
    """An installation without the bundled model asks for --checkpoint."""
    import pocketsam.weights as ckpt

    monkeypatch.setattr(ckpt, "ASSETS", tmp_path / "no_assets")
    argv = ["segment", str(small_png), "-p", "10,10", "-o", str(tmp_path / "o")]
    _cli_error(capsys, argv, "no bundled model")


def test_output_path_is_a_file(capsys, no_model, small_png: Path, tmp_path: Path) -> None:
    f = tmp_path / "taken"
    f.write_text("x")
    _cli_error(capsys, ["segment", str(small_png), "-c", str(VIT_T), "-p", "1,1", "-o", str(f)], "not a directory")


class _Payload:
    """Unpickling this would create ``marker`` (a directory) — i.e. run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_is_refused_in_process(capsys, no_model, small_png: Path, tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "PWNED"
    zip_ckpt = tmp_path / "evil.pt"  # torch's zip format
    torch.save({"model": {"image_encoder.x": torch.zeros(1)}, "extra": _Payload(marker)}, zip_ckpt)
    raw_ckpt = tmp_path / "evil_legacy.pth"  # a bare pickle stream
    raw_ckpt.write_bytes(pickle.dumps(_Payload(marker)))
    for ckpt in (zip_ckpt, raw_ckpt):
        line = _cli_error(
            capsys, ["segment", str(small_png), "-c", str(ckpt), "-p", "10,10", "-o", str(tmp_path / "o")], ckpt.name
        )
        assert "refused" in line or "not a readable" in line
        assert not marker.exists(), "the checkpoint's code ran"


def test_malicious_pickle_is_refused_subprocess(small_png: Path, tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "PWNED"
    ckpt = tmp_path / "mobile_sam.pt"
    torch.save(_Payload(marker), ckpt)
    proc = _run_subprocess(
        ["segment", str(small_png), "--checkpoint", str(ckpt), "--point", "10,10", "--out", str(tmp_path / "o")],
        cwd=tmp_path,
    )
    line = _assert_clean_error(proc.returncode, proc.stderr, proc.stdout, "refused")
    assert "mobile_sam.pt" in line
    assert not marker.exists(), "the checkpoint's code ran"
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ non-finite models


@pytest.fixture(scope="module")
def tiny_state() -> dict:
    import torch
    from conftest import tiny_config

    from pocketsam.checkpoints import export_state_dict
    from pocketsam.models import create_model

    torch.manual_seed(0)
    return export_state_dict(create_model(tiny_config()))


def _earlier_outputs(out: Path) -> dict[str, bytes]:
    """An earlier run's 3 masks + overlay + masks.json (and a user's file) in ``out``."""
    from pocketsam.cli.segment import Prompts, write_outputs

    masks = np.zeros((3, 60, 80), bool)
    masks[:, 10:30, 20:50] = True
    write_outputs(out, "small.png", np.zeros((60, 80, 3), np.uint8), masks, np.array([0.9, 0.5, 0.1]),
                  Prompts(points=[(30.0, 20.0)], labels=[1]))
    (out / "notes.txt").write_text("user file")
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_non_finite_model_is_one_error_and_earlier_outputs_stay_whole(
    capsys, monkeypatch, small_png: Path, tmp_path: Path, tiny_state: dict
) -> None:
    import torch

    import pocketsam

    out = tmp_path / "o"
    before = _earlier_outputs(out)
    argv = ["segment", str(small_png), "--point", "30,20", "--multimask", "--out", str(out)]

    finite = tmp_path / "finite.pth"
    torch.save(tiny_state, finite)
    nan_weights = tmp_path / "nan.pth"
    torch.save({**tiny_state, "mask_decoder.iou_token.weight": torch.full_like(tiny_state["mask_decoder.iou_token.weight"], float("nan"))}, nan_weights)
    _cli_error(capsys, [*argv, "-c", str(nan_weights)], "holds NaN or infinite values in 1 tensor(s) (mask_decoder.iou_token.weight)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    real_build = pocketsam.build_sam

    def nan_at_run_time(*args, **kwargs):  # finite file, non-finite outputs (e.g. an overflowing mode)
        model = real_build(*args, **kwargs)
        with torch.no_grad():
            model.mask_decoder.iou_prediction_head.layers[-1].bias.fill_(float("nan"))
        return model

    monkeypatch.setattr(pocketsam, "build_sam", nan_at_run_time)
    _cli_error(capsys, [*argv, "-c", str(finite)], "the model produced NaN or infinite mask logits or scores")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.setattr(pocketsam, "build_sam", real_build)
    assert main([*argv, "-c", str(finite)]) == 0  # and the same command with a sane model replaces them
    assert (out / "masks.json").read_bytes() != before["masks.json"] and (out / "notes.txt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_outputs_are_replaced_as_a_whole_or_not_at_all(monkeypatch, tmp_path: Path) -> None:
    import pocketsam.io
    from pocketsam.cli.segment import Prompts, write_outputs
    from pocketsam.errors import InputError

    out = tmp_path / "o"
    before = _earlier_outputs(out)
    image = np.zeros((60, 80, 3), np.uint8)
    one = np.zeros((1, 60, 80), bool)
    one[0, :5, :5] = True
    prompts = Prompts(points=[(2.0, 2.0)], labels=[1])

    def disk_full(*args, **kwargs):
        raise InputError("cannot write 'masks.json': No space left on device")

    monkeypatch.setattr(pocketsam.io, "write_json_atomic", disk_full)  # fails after the new mask and overlay
    with pytest.raises(InputError, match="No space left"):
        write_outputs(out, "small.png", image, one, np.array([0.7]), prompts)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing new, nothing deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no staging folder left
    monkeypatch.undo()
    write_outputs(out, "small.png", image, one, np.array([0.7]), prompts)
    assert sorted(p.name for p in out.iterdir()) == ["mask_0.png", "masks.json", "notes.txt", "overlay.png"]
    assert [m["score"] for m in json.loads((out / "masks.json").read_text())["masks"]] == [0.7]


# ------------------------------------------------------------------ several boxes


def test_several_boxes_give_one_mask_set_each(capsys, tmp_path: Path, tiny_state: dict) -> None:
    import torch

    ckpt = tmp_path / "tiny.pth"
    torch.save(tiny_state, ckpt)
    rng = np.random.default_rng(0)
    img = tmp_path / "scene.png"
    Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).save(img)
    boxes = [[5, 5, 40, 30], [30, 20, 79, 59]]

    def segment(out: Path, *box_args: list[int]) -> list[dict]:
        argv = ["segment", str(img), "-c", str(ckpt), "--multimask", "--out", str(out)]
        for b in box_args:
            argv += ["--box", ",".join(map(str, b))]
        assert main(argv) == 0
        return json.loads((out / "masks.json").read_text())["masks"]

    both = segment(tmp_path / "both", *boxes)
    said = capsys.readouterr().out
    assert said.startswith("6 masks for 2 boxes (best scores ") and "mask_0.png … mask_5.png" in said
    assert [r["box"] for r in both] == [boxes[0]] * 3 + [boxes[1]] * 3  # box by box, in the order given
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == sorted(
        [f"mask_{i}.png" for i in range(6)] + ["overlay.png", "masks.json"])
    for k, rec in enumerate(both):
        png = np.asarray(Image.open(tmp_path / "both" / f"mask_{k}.png")) == 255
        np.testing.assert_array_equal(png, decode_rle(rec["segmentation"]))
    for i, box in enumerate(boxes):  # each box's set is what that box alone gives (batched, not replaced)
        group = both[3 * i : 3 * i + 3]
        assert [r["score"] for r in group] == sorted((r["score"] for r in group), reverse=True)
        alone = segment(tmp_path / f"alone{i}", box)
        assert "box" not in alone[0]  # one prompt: the records stay as they were
        assert [r["score"] for r in group] == pytest.approx([r["score"] for r in alone], abs=1e-4)
        for a, b in zip(group, alone):
            ma, mb = decode_rle(a["segmentation"]), decode_rle(b["segmentation"])
            assert (ma != mb).sum() <= 0.001 * ma.size


def test_points_with_several_boxes_are_refused(capsys, no_model, small_png: Path, tmp_path: Path) -> None:
    base = ["segment", str(small_png), "-c", str(VIT_T), "--out", str(tmp_path / "o")]
    _cli_error(capsys, [*base, "--point", "5,5", "--box", "0,0,20,20", "--box", "10,10,30,30"],
               "--point cannot be combined with several boxes (2 --box given)")
    _cli_error(capsys, [*base, "--box", "0,0,20,20", "--box", "10,10,81,30"], "box 2 (10,10,81,30) goes outside")
    _cli_error(capsys, [*base, "--box", "0,0,20,20", "--box", "30,10,20,30"], "inverted")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ the one click rule


def test_one_click_rule(capsys, tmp_path: Path, tiny_state: dict) -> None:
    """A single click gives the best of SAM's three multimask outputs; several points or a
    box give the single-mask output; --multimask gives the three, best first. Compared with
    the drop-in predictor, whose ``predict`` keeps segment_anything's semantics."""
    import torch

    from pocketsam import SamPredictor, build_sam

    ckpt = tmp_path / "tiny.pth"
    torch.save(tiny_state, ckpt)
    rng = np.random.default_rng(1)
    img = tmp_path / "scene.png"
    pixels = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(img)
    predictor = SamPredictor(build_sam(checkpoint=ckpt))
    predictor.set_image(pixels)

    def segment(name: str, *prompt_args: str) -> tuple[list[np.ndarray], list[float]]:
        out = tmp_path / name
        assert main(["segment", str(img), "-c", str(ckpt), *prompt_args, "--out", str(out)]) == 0
        records = json.loads((out / "masks.json").read_text())["masks"]
        return [decode_rle(r["segmentation"]) for r in records], [r["score"] for r in records]

    def same(cli: tuple[list[np.ndarray], list[float]], masks: np.ndarray, scores: np.ndarray) -> None:
        assert len(cli[0]) == len(masks)
        assert cli[1] == pytest.approx([float(s) for s in scores], abs=1e-4)
        for a, b in zip(cli[0], masks):
            assert (a != b).sum() <= 0.001 * a.size

    click = np.array([[30.0, 20.0]])
    multi, multi_scores, _ = predictor.predict(click, np.array([1]), multimask_output=True)
    single, single_scores, _ = predictor.predict(click, np.array([1]), multimask_output=False)
    best = int(np.argmax(multi_scores))
    assert multi_scores[best] != pytest.approx(single_scores[0], abs=1e-4), "the two rules must differ here"
    same(segment("click", "--point", "30,20"), multi[best:best + 1], multi_scores[best:best + 1])

    order = np.argsort(-multi_scores, kind="stable")
    same(segment("click3", "--point", "30,20", "--multimask"), multi[order], multi_scores[order])

    two = np.array([[30.0, 20.0], [60.0, 40.0]])
    masks, scores, _ = predictor.predict(two, np.array([1, 0]), multimask_output=False)
    same(segment("two", "--point", "30,20", "--point", "60,40,0"), masks, scores)

    box = np.array([10.0, 5.0, 50.0, 40.0])
    masks, scores, _ = predictor.predict(box=box, multimask_output=False)
    same(segment("box", "--box", "10,5,50,40"), masks, scores)
    masks, scores, _ = predictor.predict(click, np.array([1]), box=box, multimask_output=False)
    same(segment("click_box", "--point", "30,20", "--box", "10,5,50,40"), masks, scores)
    capsys.readouterr()


def test_help_states_the_click_rule(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "single click the best of the 3 multimask outputs" in text
    assert "several points or a box SAM's single-mask output" in text
    assert "bundled" in text


# ------------------------------------------------------------------ the bundled model


def test_bundled_name_and_note(capsys, tmp_path: Path) -> None:
    """``--checkpoint bundled`` is the default's model; both say, in one stderr line, what
    it is and how to get a model for photos. Another checkpoint says nothing of the kind."""
    from pocketsam.checkpoints import default_checkpoint

    default_checkpoint()  # this installation has the bundled model
    img = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(2).random((60, 80, 3)) * 255).astype(np.uint8)).save(img)
    results = {}
    for name, extra in (("default", []), ("named", ["--checkpoint", "bundled"]), ("other", ["-c", str(VIT_T)])):
        out = tmp_path / name
        assert main(["segment", str(img), "--point", "30,20", *extra, "--out", str(out)]) == 0
        err = capsys.readouterr().err
        notes = [line for line in err.splitlines() if "synthetic scenes" in line]
        if name == "other":
            assert notes == []
        else:
            assert len(notes) == 1 and notes[0].startswith("note: ")
            assert "pocketsam download mobile_sam" in notes[0] and "--checkpoint mobile_sam" in notes[0]
        results[name] = (out / "masks.json").read_text()
    assert results["default"] == results["named"]
    assert results["default"] != results["other"]
