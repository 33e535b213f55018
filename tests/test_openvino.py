"""The OpenVINO execution path (optional extra): compiled encoders agree with torch float32,
and the NNCF int8 artifact round-trips and refuses edits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

CHILD = os.environ.get("POCKETSAM_OPENVINO_TESTS") == "child"
if not CHILD:
    # OpenVINO is loaded only in a child process (tests/conftest.py says why): this module
    # runs itself there, under pytest, and the parent asserts that every test passed.
    def test_openvino_in_a_child_process():
        pytest.importorskip("openvino")
        env = {**os.environ, "POCKETSAM_OPENVINO_TESTS": "child"}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                              env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert " passed" in proc.stdout and " failed" not in proc.stdout

else:
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")

#: the tests below run in the child only
in_child = pytest.mark.skipif(not CHILD, reason="runs in the child process (test_openvino_in_a_child_process)")

from pocketsam.errors import CheckpointError, InputError  # noqa: E402
from pocketsam.preprocess import Preprocess  # noqa: E402
from pocketsam.runtime import openvino as pov  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny_sam model (same seed and config as conftest's fixture, made once for the
    module), its encoder.onnx, and two scenes of pocketsam's generator as calibration."""
    from conftest import tiny_config
    from pocketsam.models import create_model
    from pocketsam.quant import synthetic_images
    from pocketsam.runtime.onnx import export_encoder

    torch.manual_seed(0)
    model = create_model(tiny_config()).eval()
    folder = tmp_path_factory.mktemp("ov")
    onnx_path = export_encoder(model, folder / "encoder.onnx")
    return model, onnx_path, synthetic_images(2, 256), folder


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _reference(model, x):
    with torch.inference_mode():
        return model.image_encoder(x)


@in_child
def test_f32_and_bf16_agree_with_torch(tiny):
    model, onnx_path, images, _ = tiny
    x = Preprocess.for_model(model).image(images[0])
    ref = _reference(model, x)
    f32 = pov.OpenVINOImageEncoder.from_onnx(onnx_path, model.img_size, "f32", threads=1)
    out = f32(x)
    assert out.shape == ref.shape == (1, model.prompt_encoder.embed_dim, 16, 16)
    assert out.dtype == torch.float32
    # f32 must really be f32: OpenVINO's own default on bf16 CPUs would be ~1e-2 off
    assert _rel(out, ref) < 1e-4
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-4)
    # a batch runs image by image and gives the same embeddings
    torch.testing.assert_close(f32(torch.cat([x, x])), torch.cat([out, out]))
    if pov.native_bf16():
        bf16 = pov.OpenVINOImageEncoder.from_onnx(onnx_path, model.img_size, "bf16", threads=1)
        err = _rel(bf16(x), ref)
        assert 1e-5 < err < 0.05, err  # really bf16 (not f32), and within bf16's tolerance
    else:
        with pytest.raises(InputError, match="bf16"):
            pov.compile_encoder(onnx_path, "bf16")


@in_child
def test_unknown_precision_is_refused(tiny):
    with pytest.raises(InputError, match="precision"):
        pov.compile_encoder(tiny[1], "fp8")


@in_child
def test_int8_artifact_round_trip_and_tampering(tiny):
    pytest.importorskip("nncf")
    from pocketsam.checkpoints import weights_sha256
    from pocketsam.quant.openvino import quantize_encoder

    model, onnx_path, images, folder = tiny
    out = folder / "int8"
    art = quantize_encoder(model, images, out, onnx_path=onnx_path, threads=1, measure=1)
    assert {p.name for p in out.iterdir()} == {pov.META_NAME, pov.XML_NAME, pov.BIN_NAME, pov.WEIGHTS_NAME}
    meta = json.loads((out / pov.META_NAME).read_text())
    assert meta["format"] == pov.FORMAT and meta["model_sha256"] == weights_sha256(model)
    assert 0.5 < meta["quality"]["mask_iou_vs_fp32"] <= 1.0
    # the IR really holds int8 quantisation (FakeQuantize nodes), not a float copy
    assert b"FakeQuantize" in (out / pov.XML_NAME).read_bytes()

    loaded = pov.load_artifact(out)
    enc = pov.compile_artifact(loaded, "f32", threads=1)
    x = Preprocess.for_model(model).image(images[0])
    err = _rel(enc(x), _reference(model, x))
    assert 1e-4 < err < 0.5, err

    # an edited metadata value, a changed .bin byte, a missing file: each refused clearly
    edited = dict(meta, img_size=512)
    (out / pov.META_NAME).write_text(json.dumps(edited))
    with pytest.raises(CheckpointError, match="was edited"):
        pov.load_artifact(out)
    edited = json.loads(json.dumps(meta))
    edited["quality"]["mask_iou_vs_fp32"] = 1.0
    (out / pov.META_NAME).write_text(json.dumps(edited))
    with pytest.raises(CheckpointError, match="was edited"):
        pov.load_artifact(out)
    (out / pov.META_NAME).write_text(json.dumps(meta))
    pov.load_artifact(out)  # restored: loads again
    _runs_through_the_runtime(out, model, images[0])
    data = bytearray((out / pov.BIN_NAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / pov.BIN_NAME).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="encoder.int8.bin does not match"):
        pov.load_artifact(out)
    (out / pov.BIN_NAME).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        pov.load_artifact(out)
    (out / pov.META_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        pov.load_artifact(out)


@in_child
def test_foreign_ir_operations_are_refused(tmp_path):
    xml = b'<?xml version="1.0"?><net name="x" version="11"><layers>' \
          b'<layer id="0" name="a" type="MyOp" version="my_extension"/></layers></net>'
    with pytest.raises(CheckpointError, match="my_extension"):
        pov._check_ir(xml, tmp_path)
    with pytest.raises(CheckpointError, match="DTD"):
        pov._check_ir(b'<!DOCTYPE net [<!ENTITY a "b">]><net/>', tmp_path)


def _runs_through_the_runtime(out, model, image):
    """build_sam loads the NNCF artifact like pocketsam's own: the model prefers int8, and
    the int8 path runs the artifact's encoder on OpenVINO with pocketsam's decoder."""
    import numpy as np

    from pocketsam import SamPredictor, build_sam

    sam = build_sam(checkpoint=out)
    assert isinstance(sam.info.int8, pov.OpenVINOArtifact) and sam.info.preferred_mode == "int8"
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    assert "OpenVINO NNCF int8" in predictor.speed_path
    masks, scores, _ = predictor.predict(point_coords=np.array([[100.0, 100.0]]), point_labels=np.array([1]))
    assert masks.shape == (3, 256, 256) and np.isfinite(scores).all()


@in_child
def test_openvino_speed_mode(tiny, tmp_path, monkeypatch):
    """mode="openvino": the encoder on OpenVINO (f32 here, forced), pocketsam's decoder; the
    masks agree with float32's; fast counts OpenVINO among its candidates."""
    from pocketsam.runtime import choose_fast, optimize, select
    from pocketsam.runtime.agreement import mask_agreement, scene

    monkeypatch.setenv("POCKETSAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("POCKETSAM_FAST_OPENVINO", "1")  # the suite keeps them off elsewhere (conftest)
    model = tiny[0]
    fast = optimize(model, "openvino", precision="f32", threads=1)
    assert isinstance(fast.image_encoder, pov.OpenVINOImageEncoder)
    assert fast.info.speed.describe() == "openvino (OpenVINO f32 encoder)"
    with torch.no_grad():
        q = mask_agreement(optimize(model, "default"), fast, [scene(256, seed=1)])
    assert q["mask_iou_vs_fp32"] > 0.99 and q["embedding_rel_l2"] < 1e-4
    seen = {}

    def measured(model, optimize, modes, repeats=3, cache_dir=None):
        seen["modes"] = list(modes)
        return {m: (2.0 if m == "openvino:f32" else 0.5) for m in modes}

    monkeypatch.setattr(select, "measure_speedups", measured)
    choice = choose_fast(model, cache_dir=tmp_path)
    assert "openvino:f32" in seen["modes"] and choice.mode == "openvino:f32", choice.describe()
