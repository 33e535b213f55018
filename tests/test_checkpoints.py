"""Checkpoint reading: formats, safety, and clear errors."""

from __future__ import annotations

import json
import os
import pickle
import random

import pytest
import torch
from safetensors.torch import save_file

from pocketsam import build_sam, sam_model_registry
from pocketsam.checkpoints import export_state_dict, read_checkpoint
from pocketsam.errors import CheckpointError
from pocketsam.models import create_model

from conftest import FIXTURE_VIT_T, tiny_config


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(0)
    return export_state_dict(create_model(tiny_config()))


def same_weights(model, state) -> bool:
    mine = model.state_dict()
    return all(torch.equal(mine[k], state[k].float()) for k in mine)


@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict", "ddp"])
def test_accepts_wrapped_state_dicts(tmp_path, tiny_state, wrap):
    obj = {
        "plain": tiny_state,
        "model": {"model": tiny_state, "epoch": 3},
        "state_dict": {"state_dict": tiny_state},
        "ddp": {f"module.{k}": v for k, v in tiny_state.items()},
    }[wrap]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    model = build_sam(checkpoint=path)
    assert model.img_size == 256 and same_weights(model, tiny_state)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoints_load_into_float32(tmp_path, tiny_state, dtype):
    half = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tiny_state.items()}
    torch.save(half, tmp_path / "half.pt")
    model = build_sam(checkpoint=tmp_path / "half.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_safetensors(tmp_path, tiny_state):
    save_file(tiny_state, str(tmp_path / "m.safetensors"))
    assert same_weights(build_sam(checkpoint=tmp_path / "m.safetensors"), tiny_state)


def test_golden_fp16_checkpoint_loads(vit_t_checkpoint):
    state, _ = read_checkpoint(vit_t_checkpoint)
    assert state["image_encoder.neck.0.weight"].dtype == torch.float16
    model = sam_model_registry["vit_t"](checkpoint=vit_t_checkpoint)
    assert model.image_encoder.neck[0].weight.dtype == torch.float32


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_code_executing_pickle_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(1), "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        build_sam(checkpoint=path)
    assert not marker.exists()


def test_refuses_plain_pickle_with_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError):
        build_sam(checkpoint=path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(random.Random(0).randbytes(4096)), "not a readable"),
        (lambda p: p.write_text("hello, I am not a checkpoint\n"), "not a readable"),
        (lambda p: torch.save([1, 2, 3], p), "holds no state_dict"),
        (lambda p: torch.save({"a.weight": torch.zeros(2)}, p), "not a SAM-family checkpoint"),
    ],
    ids=["missing", "directory", "empty", "random-bytes", "text", "list", "not-sam"],
)
def test_bad_files_give_one_clear_error(tmp_path, make, match):
    path = tmp_path / "bad.pth"
    make(path)
    with pytest.raises(CheckpointError, match=match) as info:
        build_sam(checkpoint=path)
    assert "\n" not in str(info.value)


def test_bad_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        build_sam(checkpoint=path)


def test_mismatch_names_keys_counts_and_closest_type(vit_t_checkpoint):
    with pytest.raises(CheckpointError) as info:
        build_sam("vit_b", checkpoint=vit_t_checkpoint)
    msg = str(info.value)
    assert "missing keys" in msg and "unexpected keys" in msg
    assert "image_encoder." in msg  # names a few keys
    assert "most resembles 'vit_t'" in msg


def test_truncated_state_dict_reports_missing(tmp_path, vit_t_checkpoint):
    state, _ = read_checkpoint(vit_t_checkpoint)
    del state["mask_decoder.iou_token.weight"]
    state.pop("image_encoder.neck.1.bias")
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match=r"2 missing keys") as info:
        build_sam("vit_t", checkpoint=tmp_path / "cut.pt")
    assert "most resembles 'vit_t'" in str(info.value)


def test_unknown_model_type():
    with pytest.raises(CheckpointError, match="unknown model type 'vit_x'"):
        build_sam("vit_x")


def test_random_init_by_name_and_registry_aliases():
    model = sam_model_registry["mobile_sam"]()
    assert model.config.family == "tiny_vit"
    assert sam_model_registry["tinysam"]().mask_decoder.multimask_only
    assert not model.mask_decoder.multimask_only


def test_tinysam_detected_from_filename(tmp_path):
    target = tmp_path / "tinysam_42.3.pth"
    target.write_bytes(FIXTURE_VIT_T.read_bytes())  # a (reduced) vit_t layout, as TinySAM's
    assert build_sam(checkpoint=target).mask_decoder.multimask_only
    assert not build_sam(checkpoint=FIXTURE_VIT_T).mask_decoder.multimask_only


def test_tiny_vit_models_run_at_another_input_size():
    from pocketsam.checkpoints import default_checkpoint
    from pocketsam.errors import InputError
    from pocketsam.predictor import SamPredictor

    base, big = build_sam(), build_sam(img_size=512)  # the bundled model, at 256² and at 512²
    assert base.img_size == 256 and big.img_size == 512
    assert big.prompt_encoder.image_embedding_size == (32, 32) and big.prompt_encoder.mask_input_size == (128, 128)
    for a, b in zip(base.state_dict().values(), big.state_dict().values()):  # same weights
        assert torch.equal(a, b)
    predictor = SamPredictor(big)
    predictor.set_image((torch.rand(100, 140, 3) * 255).to(torch.uint8).numpy())
    masks, scores, low = predictor.predict(box=[20, 10, 90, 60], multimask_output=False)
    assert masks.shape == (1, 100, 140) and low.shape == (1, 128, 128)
    with pytest.raises(InputError, match="not a positive multiple of 64"):
        build_sam(checkpoint=default_checkpoint(), img_size=500)
    with pytest.raises(InputError, match="cannot change the input size of a vit encoder"):
        build_sam("vit_b", img_size=512)


def test_export_cli_writes_loadable_fp16_safetensors_and_pth(tmp_path, capsys):
    from dataclasses import replace

    from pocketsam.cli import main

    cfg = tiny_config()
    cfg = replace(cfg, decoder=replace(cfg.decoder, multimask_only=True))
    torch.manual_seed(3)
    model = create_model(cfg).eval()
    src = tmp_path / "trained.pth"
    torch.save(export_state_dict(model), src)

    half = tmp_path / "half.safetensors"
    assert main(["export", str(src), "--out", str(half), "--dtype", "fp16"]) == 0
    assert "half.safetensors" in capsys.readouterr().out
    sd, _ = read_checkpoint(half)
    assert {v.dtype for v in sd.values() if v.is_floating_point()} == {torch.float16}
    loaded = build_sam(checkpoint=half)
    assert loaded.config == model.config  # architecture, input size and TinySAM flag recovered
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, k  # fp16 on disk, float32 in memory
        torch.testing.assert_close(b, a.half().to(a.dtype), rtol=0, atol=0, msg=k)

    full = tmp_path / "full.pth"
    assert main(["export", str(half), "-o", str(full)]) == 0
    assert build_sam(checkpoint=full).config == model.config

    assert main(["export", str(src), "--out", str(tmp_path / "model.bin")]) == 2
    assert "no known extension" in capsys.readouterr().err


def test_recommended_everything_thresholds_travel_with_the_weights(tmp_path, capsys):
    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.cli import export as export_cli
    from pocketsam.cli import main
    from pocketsam.errors import CheckpointWarning
    from pocketsam.thresholds import EVERYTHING_KEYS

    assert export_cli.EVERYTHING_KEYS is EVERYTHING_KEYS  # one home (pocketsam.thresholds), no copy
    torch.manual_seed(4)
    model = create_model(tiny_config()).eval()
    assert model.everything_defaults == {}
    model.everything_defaults = {"pred_iou_thresh": 0.4, "high_score_thresh": 2.5}
    for name in ("t.safetensors", "t.pth"):  # a non-official architecture: both formats carry them
        path = save_checkpoint(model, tmp_path / name, dtype=torch.float16)
        assert build_sam(checkpoint=path).everything_defaults == {"pred_iou_thresh": 0.4, "high_score_thresh": 2.5}

    # the export CLI keeps, overrides, adds and drops them
    src = tmp_path / "t.safetensors"
    out = tmp_path / "o.safetensors"
    assert main(["export", str(src), "--out", str(out), "--stability-score-thresh", "0.7", "--pred-iou-thresh", "0.5"]) == 0
    assert build_sam(checkpoint=out).everything_defaults == {
        "pred_iou_thresh": 0.5, "stability_score_thresh": 0.7, "high_score_thresh": 2.5}
    assert main(["export", str(out), "--out", str(out), "--drop-thresholds", "--high-score-thresh", "3"]) == 0
    assert build_sam(checkpoint=out).everything_defaults == {"high_score_thresh": 3.0}

    # an official architecture saved as .pth keeps exactly the official keys (strict loaders)
    official = create_model("vit_t")
    official.everything_defaults = {"pred_iou_thresh": 0.5}
    with pytest.warns(CheckpointWarning, match=r"'vit_t.pth' holds only the reference keys .* does not record the "
                                               r"recommended 'everything' thresholds: write a .safetensors"):
        sd, meta = read_checkpoint(save_checkpoint(official, tmp_path / "vit_t.pth"))
    assert meta == {} and set(sd) == set(official.state_dict())
    assert build_sam(checkpoint=save_checkpoint(official, tmp_path / "vit_t.safetensors")).everything_defaults == {
        "pred_iou_thresh": 0.5}


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path, tiny_state, value):
    state = dict(tiny_state)
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    state[key] = state[key].clone()
    state[key][0, 0] = value
    torch.save(state, tmp_path / "diverged.pth")
    with pytest.raises(CheckpointError, match=r"NaN or infinite values in 1 tensor\(s\) \(mask_decoder\.iou_pre") as info:
        build_sam(checkpoint=tmp_path / "diverged.pth")
    assert "diverged.pth" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("option,value", [("--pred-iou-thresh", "7"), ("--pred-iou-thresh", "nan"),
                                          ("--stability-score-thresh", "inf"), ("--high-score-thresh", "-inf")])
def test_thresholds_everything_refuses_are_refused_by_export_and_ignored_at_load(tmp_path, capsys, option, value):
    """One rule (checkpoints.check_everything_setting) for everything's options, export's
    options, what save_checkpoint writes and what a checkpoint recorded."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from pocketsam.checkpoints import save_checkpoint
    from pocketsam.cli import main
    from pocketsam.errors import CheckpointWarning, InputError
    from pocketsam.thresholds import check_everything_setting

    torch.manual_seed(5)
    model = create_model(tiny_config()).eval()
    model.everything_defaults = {"pred_iou_thresh": 0.4}
    src = save_checkpoint(model, tmp_path / "m.safetensors")
    key = option[2:].replace("-", "_")
    with pytest.raises(InputError, match="must be"):
        check_everything_setting(key, float(value))

    out = tmp_path / "bad.safetensors"
    assert main(["export", str(src), "--out", str(out), f"{option}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option} must be") and err.count("\n") == 1 and not out.exists()
    mode = ["--mode", "hierarchical"] if key == "high_score_thresh" else []
    assert main(["everything", str(tmp_path / "none.png"), f"{option}={value}", *mode, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {option} must be")  # refused by everything, before anything else

    model.everything_defaults = {key: float(value)}  # the library cannot write it either
    with pytest.raises(InputError, match=rf"everything_defaults\['{key}'\] must be"):
        save_checkpoint(model, out)

    # a checkpoint that recorded it anyway (older pocketsam's tensor, or by hand): ignored with a warning.
    # The header's other thresholds are kept beside the legacy tensor (both sources are read)
    sd = load_file(str(src))
    sd[f"pocketsam.everything.{key}"] = torch.tensor(float(value), dtype=torch.float64)
    with safe_open(str(src), framework="pt") as f:
        record = json.loads(f.metadata()["pocketsam"])
    record["everything"].pop(key, None)
    save_file(sd, str(out), metadata={"pocketsam": json.dumps(record)})
    with pytest.warns(CheckpointWarning, match=rf"the {key} recorded in checkpoint '.*bad.safetensors' must be"):
        loaded = build_sam(checkpoint=out)
    assert key not in loaded.everything_defaults
    assert loaded.everything_defaults == ({} if key == "pred_iou_thresh" else {"pred_iou_thresh": 0.4})
    fixed = tmp_path / "fixed.safetensors"
    assert main(["export", str(out), "--out", str(fixed)]) == 0  # re-exporting drops it
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and err.count("\n") == 1 and "--drop-thresholds" in err
    assert key not in build_sam(checkpoint=fixed).everything_defaults
