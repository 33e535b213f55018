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
    from pocketsam.checkpoints import build_sam
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
    from pocketsam.checkpoints import build_sam

    path = tmp_path / "bad.pt"
    torch.save({**nano_state, key: value}, path)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=match):
        build_sam(checkpoint=path)
    assert time.perf_counter() - t0 < 5


def test_real_but_absurd_shapes_are_refused(tmp_path, nano_state):
    """Tensors that do hold their data, but describe more outputs or layers than any SAM."""
    from pocketsam.checkpoints import build_sam

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
