"""Issue #18: untrusted checkpoints cannot make loading allocate without bound; library
prompt errors are clear; output paths are checked before the work; stale temporaries,
SA-1B paths outside the data folder and concurrent ``everything`` runs."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest
import torch

from pocketsam.errors import CheckpointError, InputError


@pytest.fixture(scope="module")
def nano_state():
    from pocketsam.checkpoints import export_state_dict
    from pocketsam.models import MODEL_CONFIGS, create_model

    torch.manual_seed(0)
    return export_state_dict(create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ (A) huge tensors
def test_expanded_tensor_is_refused_before_anything_is_allocated(tmp_path, nano_state, capsys):
    """A 300000×100000 IoU-head weight stored as one float: 17 MB on disk, 120 GB as declared."""
    from pocketsam import build_sam
    from pocketsam.cli import main

    sd = dict(nano_state)
    sd["mask_decoder.iou_prediction_head.layers.0.weight"] = torch.zeros(1).expand(300000, 100000)
    path = tmp_path / "huge.pt"
    torch.save(sd, path)
    assert path.stat().st_size < 50e6
    before, t0 = _peak_rss_mb(), time.perf_counter()
    with pytest.raises(CheckpointError, match=r"declares 30,000,000,000 values .* stores only 1"):
        build_sam(checkpoint=path)
    assert time.perf_counter() - t0 < 10
    assert _peak_rss_mb() - before < 500  # nothing close to the declared size was allocated
    img = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(img)
    assert main(["segment", str(img), "--checkpoint", str(path), "--point", "5,5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "huge.pt" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("pocketsam.img_size", torch.tensor(10**7), r"input size = 10000000 \(supported: 64 to 4,096\)"),
        ("pocketsam.img_size", torch.tensor(100), r"not a multiple of 64"),
        ("pocketsam.transformer_num_heads", torch.tensor(7), r"7 decoder heads do not divide"),
        ("pocketsam.transformer_num_heads", torch.tensor(10**9), r"decoder heads = 1000000000"),
        ("pocketsam.layer0_window", torch.tensor(-3), r"stage 0 window = -3"),
        ("pocketsam.img_size", torch.zeros(3), r"metadata 'pocketsam.img_size' must be one number"),
        ("pocketsam.img_size", torch.tensor(float("nan")), r"input size = nan"),
        ("pocketsam.transformer_num_heads", torch.tensor(8.0), r"decoder heads = 8.0"),
    ],
)
def test_metadata_hints_out_of_bounds_are_refused(tmp_path, nano_state, key, value, match):
    from pocketsam import build_sam

    path = tmp_path / "bad.pt"
    torch.save({**nano_state, key: value}, path)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=match):
        build_sam(checkpoint=path)
    assert time.perf_counter() - t0 < 5


def test_real_but_absurd_shapes_are_refused(tmp_path, nano_state):
    """Tensors that do hold their data, but describe more outputs or layers than any SAM."""
    from pocketsam import build_sam

    sd = dict(nano_state)
    sd["mask_decoder.mask_tokens.weight"] = torch.zeros(41, 256)
    torch.save(sd, tmp_path / "outputs.pt")
    with pytest.raises(CheckpointError, match=r"multimask outputs = 40 \(supported: 1 to 16\)"):
        build_sam(checkpoint=tmp_path / "outputs.pt")

    sd = dict(nano_state)
    sd["mask_decoder.iou_token.weight"] = torch.zeros(256)  # wrong rank
    torch.save(sd, tmp_path / "rank.pt")
    with pytest.raises(CheckpointError, match="tensor shapes do not describe a model"):
        build_sam(checkpoint=tmp_path / "rank.pt")


def test_config_limits_admit_every_official_and_preset_architecture():
    from pocketsam.checkpoints import check_architecture, config_from_state_dict, config_metadata
    from pocketsam.models import MODEL_CONFIGS, create_model

    for name, config in MODEL_CONFIGS.items():
        check_architecture(config)
        with torch.device("meta"):
            sd = create_model(config).state_dict()
        meta = config_metadata(config)
        assert config_from_state_dict(sd, meta).encoder == config.encoder, name


# ------------------------------------------------------------- (B) library prompts
@pytest.fixture(scope="module")
def predictor():
    from pocketsam import SamPredictor
    from pocketsam.models import MODEL_CONFIGS, create_model

    torch.manual_seed(0)
    p = SamPredictor(create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)).eval())
    p.set_image(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    return p


NAN = float("nan")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"point_coords": [[10, 10, 1]], "point_labels": [1]}, r"N×2 array of \(x, y\), got shape \(1, 3\)"),
        ({"point_coords": [[10, 10, 1], [5, 5, 1]], "point_labels": [1, 1, 1]}, r"N×2"),  # 6 numbers: not 3 points
        ({"point_coords": [[NAN, 10]], "point_labels": [1]}, "NaN or infinite"),
        ({"point_coords": [[float("inf"), 10]], "point_labels": [1]}, "NaN or infinite"),
        ({"box": [1, 2, NAN, 20]}, "NaN or infinite"),
        ({"box": [1, 2, 20]}, "one box of 4 numbers"),
        ({"point_coords": [[10, 10]], "point_labels": [2]}, "point label 2 is not 0 or 1"),
        ({"point_coords": [[10, 10]], "point_labels": [-1]}, "point label -1 is not 0 or 1"),
        ({"point_coords": [[10, 10]], "point_labels": [NAN]}, "point label nan is not 0 or 1"),
        ({"point_coords": [["a", 10]], "point_labels": [1]}, "must be numbers"),
        ({"point_labels": [1]}, "without point_coords"),
        ({"point_coords": [[10, 10]], "point_labels": [1], "mask_input": np.zeros((1, 8, 8))}, r"mask_input must be B×1×16×16"),
    ],
)
def test_predict_refuses_malformed_prompts(predictor, kwargs, match):
    with pytest.raises(InputError, match=match):
        predictor.predict(**kwargs)


def test_predict_torch_refuses_mismatched_and_invalid_batches(predictor):
    pts = torch.tensor([[[10.0, 10.0]], [[20.0, 5.0]]])
    ones = torch.ones(2, 1, dtype=torch.int)
    cases = [
        ((pts, torch.ones(3, 1, dtype=torch.int)), r"point_labels must be B×N = \(2, 1\)"),  # batch
        ((pts, torch.ones(2, 2, dtype=torch.int)), r"point_labels must be B×N"),  # point count
        ((pts[0], ones[0]), r"point_coords must be B×N×2"),
        ((pts, torch.full((2, 1), 5, dtype=torch.int)), "point label 5 is not one of -1, 0, 1, 2, 3"),
        ((pts.masked_fill(pts > 15, NAN), ones), "NaN or infinite"),
    ]
    for (coords, labels), match in cases:
        with pytest.raises(InputError, match=match):
            predictor.predict_torch(coords, labels)
    with pytest.raises(InputError, match=r"different batch sizes \(point_coords 2, boxes 3\)"):
        predictor.predict_torch(pts, ones, boxes=torch.tensor([[1.0, 1, 9, 9]] * 3))
    with pytest.raises(InputError, match="NaN or infinite"):
        predictor.predict_torch(None, None, boxes=torch.tensor([[1.0, 1, NAN, 9]]))
    with pytest.raises(InputError, match=r"boxes must be B×4"):
        predictor.predict_torch(None, None, boxes=torch.tensor([1.0, 1, 9, 9]))
    # SAM's own label set is accepted: box corners 2/3 and padding -1
    masks, scores, _ = predictor.predict_torch(torch.tensor([[[1.0, 1], [30, 20], [5, 5]]]),
                                               torch.tensor([[2, 3, -1]]))
    assert masks.shape[0] == 1 and bool(torch.isfinite(scores).all())


@pytest.mark.parametrize("shape", [(1, 300, 3), (300, 2, 3)])
def test_very_elongated_images_work(predictor, shape):
    """Resized to a 64-pixel long side, a 1×300 image was 0 rows high: a ValueError traceback."""
    from pocketsam import SamPredictor

    p = SamPredictor(predictor.model)
    p.set_image(np.zeros(shape, np.uint8))
    masks, scores, _ = p.predict(point_coords=[[0, 0]], point_labels=[1])
    assert masks.shape == (3, *shape[:2]) and np.isfinite(scores).all()


@pytest.mark.parametrize("mode", ["grid", "hierarchical", "boxes"])
def test_generators_refuse_grayscale_arrays(predictor, mode):
    from pocketsam.everything import GENERATORS

    kwargs = {"proposals": np.array([[1.0, 1, 9, 9]])} if mode == "boxes" else {"points_per_side": 2}
    gen = GENERATORS[mode](predictor.model, **kwargs)
    with pytest.raises(InputError, match=r"H×W×3 image, got an array of shape \(30, 40\)"):
        gen.generate(np.zeros((30, 40), np.uint8))


@pytest.mark.parametrize("mode", ["grid", "hierarchical", "boxes"])
def test_generators_drop_masks_without_pixels(mode, one_thread):
    """Masks with no pixel (#24 item 1: 1×1 … 32×32 images gave area-0 masks with a NaN
    stability score, in the CLI and the server's Everything): with the filters off, where
    they got through, the result is valid and empty, never area 0 or NaN."""
    from pocketsam import SamPredictor
    from pocketsam.everything import GENERATORS
    from pocketsam.models import MODEL_CONFIGS, create_model

    torch.manual_seed(3)
    model = create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)).eval()
    model.mask_threshold = 1e6  # no logit reaches it: every decoded mask is empty
    rng = np.random.default_rng(0)
    for s in (1, 5, 32):
        kwargs = {"proposals": np.array([[0.0, 0, s, s]])} if mode == "boxes" else {"points_per_side": 2}
        gen = GENERATORS[mode](SamPredictor(model), pred_iou_thresh=0, stability_score_thresh=0, **kwargs)
        assert gen.generate(rng.integers(0, 255, (s, s, 3), dtype=np.uint8)) == []
        counts = gen.last_stats["masks"]
        assert counts["after_stability"] > 0 and counts["after_edge"] == 0, counts  # decoded, then dropped


# ------------------------------------------------------------- (C) output paths first
def _no_work(*_args, **_kwargs):
    raise AssertionError("the work started before the output path was checked")


@pytest.mark.parametrize("bad", ["dir", "missing/parent/out.json"])
def test_eval_and_bench_check_output_before_the_run(tmp_path, monkeypatch, capsys, bad):
    import pocketsam.benchmark as bench
    import pocketsam.eval.runners as runners
    from pocketsam.cli import main

    monkeypatch.setattr(runners, "load_model", _no_work)
    monkeypatch.setattr(bench, "_run_worker", _no_work)
    (tmp_path / "dir").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.json").write_text("{}")
    out = str(tmp_path / bad)
    for argv in (["eval", "everything", "--data", str(tmp_path / "data"), "--output", out],
                 ["eval", "prompts", "--data", str(tmp_path / "data"), "--output", out],
                 ["bench", "--modes", "default", "--output", out]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --output"), (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "dir"]


# ------------------------------------------------------------------------ (D) lesser
@pytest.fixture(scope="module")
def nano_ckpt(tmp_path_factory):
    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.models import MODEL_CONFIGS, create_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "nano64.safetensors"
    save_checkpoint(create_model(MODEL_CONFIGS["pocketsam_nano"].with_img_size(64)).eval(), path)
    return path


def _images(folder, n=2):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def _everything(images, out, ckpt):
    return ["everything", str(images), "--checkpoint", str(ckpt), "--points-per-side", "2",
            "--pred-iou-thresh", "-100", "--stability-score-thresh", "0", "--out", str(out)]


def test_everything_removes_what_a_killed_run_left_and_nothing_else(tmp_path, nano_ckpt, capsys):
    from pocketsam.cli import main

    images, out = _images(tmp_path / "in"), tmp_path / "out"
    assert main(_everything(images, out, nano_ckpt)) == 0
    # what SIGKILL during atomic writes leaves: hidden temporaries, a staging folder
    (out / "img0" / ".annotations.json.0123456789ab.tmp").write_text('{"half')
    (out / ".instances.json.abcdefabcdef.tmp").write_text("{")
    (out / ".img1.0123456789ab.tmp").mkdir()
    (out / ".img1.0123456789ab.tmp" / "overlay.png").write_bytes(b"\x89PNG")
    # the user's own files, even hidden or ending in .tmp, stay
    (out / "notes.tmp").write_text("mine")
    (out / ".cache.tmp").write_text("mine")
    assert main(_everything(images, out, nano_ckpt)) == 0
    assert "already done" in capsys.readouterr().out
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == [".cache.tmp", "img0", "img0/annotations.json", "img0/overlay.png", "img1",
                    "img1/annotations.json", "img1/overlay.png", "notes.tmp"]


def test_training_removes_a_killed_checkpoint_write(tmp_path):
    from pocketsam.cli import main

    data, run = tmp_path / "scenes", tmp_path / "run"
    assert main(["data", "synth", "--out", str(data), "--num-images", "2", "--size", "64,64", "--quiet"]) == 0
    run.mkdir()
    (run / ".checkpoint_last.pt.tmp4242").write_bytes(b"half a checkpoint")
    (run / ".metrics.jsonl.0123456789ab.tmp").write_text('{"step"')
    assert main(["train", "--data", str(data), "--out", str(run), "--img-size", "64", "--arch", "pocketsam_nano",
                 "--steps", "1", "--batch-size", "1", "--masks-per-image", "1", "--workers", "0", "--val-images", "0",
                 "--warmup", "1", "--rounds", "1"]) == 0
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert (run / "checkpoint_last.pt").is_file()


@pytest.mark.parametrize("name", ["../x.jpg", "/etc/passwd", "a/../../x.jpg", "C:\\x.jpg", "..\\x.jpg"])
def test_annotation_file_names_outside_the_data_folder_are_refused(tmp_path, name):
    import json

    from pocketsam.data import CocoReader, SA1BReader

    (tmp_path / "x.jpg").write_bytes(b"outside")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.json").write_text(json.dumps({"image": {"image_id": 1, "width": 4, "height": 4, "file_name": name},
                                             "annotations": []}))
    with pytest.raises(InputError, match="points outside the data folder"):
        SA1BReader(data)[0]
    coco = {"images": [{"id": 1, "width": 4, "height": 4, "file_name": name}], "annotations": [],
            "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "inst.json").write_text(json.dumps(coco))
    with pytest.raises(InputError, match="points outside the data folder"):
        CocoReader(tmp_path / "inst.json", data)


def test_sub_folders_inside_the_data_folder_are_fine(tmp_path):
    import json

    from PIL import Image

    from pocketsam.data import SA1BReader

    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "a.json").write_text(json.dumps({"image": {"image_id": 1, "width": 4, "height": 4,
                                                           "file_name": "imgs/a.png"}, "annotations": []}))
    assert SA1BReader(tmp_path)[0].image_path == tmp_path / "imgs" / "a.png"


def test_two_everything_runs_on_one_folder_one_is_told_it_is_in_use(tmp_path, nano_ckpt, capsys):
    import signal
    import subprocess
    import sys

    from pocketsam.cli import main

    images, out = _images(tmp_path / "in"), tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pocketsam.io import folder_lock\n"
         "with folder_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(_everything(images, out, nano_ckpt)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is in use by another `pocketsam everything` run" in err[0]
        assert f"pid {holder.pid}" in err[0]
        assert not (out / "img0").exists()  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder leaves no stale lock
        holder.wait()
    assert main(_everything(images, out, nano_ckpt)) == 0
    assert (out / "img0" / "annotations.json").is_file() and (out / "img1" / "annotations.json").is_file()
    assert not (out / ".pocketsam.lock").exists()


def test_folder_lock_removes_the_folder_it_created_when_nothing_was_written(tmp_path):
    from pocketsam.io import folder_lock

    with folder_lock(tmp_path / "new") as d:
        assert d.is_dir()
        with pytest.raises(InputError, match="in use"):
            with folder_lock(tmp_path / "new"):
                pass
    assert not (tmp_path / "new").exists()
    with folder_lock(tmp_path / "kept") as d:
        (d / "result.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["result.json"]


@pytest.mark.parametrize("make", [lambda: torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (300000, 100000), check_invariants=False), lambda: torch.zeros(4, dtype=torch.complex64)],
                         ids=["sparse", "complex"])
def test_sparse_and_complex_tensors_are_refused(tmp_path, nano_state, make):
    """A sparse tensor declares its size without storing it (densifying allocates it all);
    complex weights would be cast with a stray warning."""
    from pocketsam import build_sam

    torch.save({**nano_state, "mask_decoder.iou_token.weight": make()}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="not a dense real one"):
        build_sam(checkpoint=tmp_path / "odd.pt")


# --------------------------------------------------- issue 24 item 6: kills and SIGTERM
def test_staging_a_killed_process_left_is_swept_by_the_next_write(tmp_path):
    """A killed `quantize` left a 27 MB `.q1.<hex>.tmp` staging folder that survived later
    successful runs; a live one (lock held) must survive the sweep."""
    import os

    from pocketsam.io import LOCK_NAME, remove_stale_staging, replace_files_together

    dest = tmp_path / "q1"
    dead = tmp_path / ".q1.0123456789ab.tmp"  # its process is gone: the lock file is not held
    dead.mkdir()
    (dead / LOCK_NAME).write_text("")
    (dead / "encoder.int8.onnx").write_bytes(b"\0" * 1000)
    old = tmp_path / ".q1.aaaaaaaaaaaa.tmp"  # from before staging locks, an hour old
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    young = tmp_path / ".q1.bbbbbbbbbbbb.tmp"  # no lock file yet, just created: may be alive
    young.mkdir()
    mine = tmp_path / ".q1.notes.tmp"  # the user's: not our name
    mine.mkdir()
    with replace_files_together(dest) as live:
        (live / "a.txt").write_text("new")
        assert remove_stale_staging(dest) == 0  # the live stage (lock held) and the young one stay
        assert live.is_dir() and young.is_dir()
    assert not dead.exists() and not old.exists() and young.is_dir() and mine.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".q1.bbbbbbbbbbbb.tmp", ".q1.notes.tmp", "q1"]
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"]  # the stage's lock file is not an output


def _wait_for(path, proc, seconds=60.0):
    t0 = time.perf_counter()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.perf_counter() - t0 < seconds, f"{path} never appeared"
        time.sleep(0.02)


def test_sigterm_cleans_up_staging_like_ctrl_c(tmp_path):
    """What `quantize` does while it writes (terminate_as_interrupt + replace_files_together),
    ended by SIGTERM: no staging folder left."""
    import signal
    import subprocess
    import sys

    code = ("import sys, time\nfrom pathlib import Path\n"
            "from pocketsam.io import replace_files_together, terminate_as_interrupt\n"
            "with terminate_as_interrupt(), replace_files_together(sys.argv[1]) as stage:\n"
            "    (stage / 'encoder.int8.onnx').write_bytes(b'0' * 1000)\n"
            "    Path(sys.argv[2]).touch()\n    time.sleep(60)\n")
    started = tmp_path / "started"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "q1"), str(started)],
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(started, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["started"]


def test_sigterm_ends_everything_without_leaving_its_lock(tmp_path, nano_ckpt):
    import signal
    import subprocess
    import sys

    images, out = _images(tmp_path / "in", n=40), tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pocketsam", *_everything(images, out, nano_ckpt)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "POCKETSAM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    try:
        _wait_for(out / "img0" / "overlay.png", proc, 120)  # the run is under way, its lock held
        assert (out / ".pocketsam.lock").exists()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    left = [p.name for p in out.rglob("*") if p.name == ".pocketsam.lock" or p.name.endswith(".tmp")]
    assert not left
    for d in out.iterdir():  # every image folder holds both files or none
        assert sorted(p.name for p in d.iterdir()) in (["annotations.json", "overlay.png"], []), d


def test_export_into_a_path_under_a_file_is_one_error_line(tmp_path, nano_ckpt, capsys):
    """`export … --out afile/x.safetensors` gave FileExistsError (#24 item 13)."""
    from pocketsam.cli import main

    afile = tmp_path / "afile"
    afile.write_text("mine")
    (tmp_path / "d.safetensors").mkdir()
    for out, what in [(afile / "x.safetensors", "is a file, not a folder"),
                      (afile / "deeper" / "x.pth", "is a file, not a folder"),
                      (tmp_path / "d.safetensors", "is a folder")]:
        assert main(["export", str(nano_ckpt), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and what in err, err
    assert afile.read_text() == "mine"
    assert main(["export", str(nano_ckpt), "--out", str(tmp_path / "new" / "x.safetensors")]) == 0  # folders are made
