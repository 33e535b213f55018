"""`pocketsam export --format onnx`: SAM's ONNX interface, checked with onnxruntime against
the torch model on the golden cases at the golden tolerances, and called exactly as
segment_anything's ONNX example notebook calls it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pocketsam import SamPredictor, build_sam
from pocketsam.cli import main

from conftest import FIXTURE_VIT_T, FIXTURES, shared_golden

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

CASES = ["point_multi", "points_posneg_single", "box_single", "box_point_multi", "mask_refine_single"]
MODELS = {"vit_t": "vit_t_random.pt", "vit_small": "vit_small_random.pt"}


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def vit_t_export(golden_dir, tmp_path_factory):
    """The CLI's export of the golden vit_t weights (all parts, SAM's single-mask decoder)."""
    out = tmp_path_factory.mktemp("onnx_vit_t")
    assert main(["export", str(golden_dir / "vit_t_random.pt"), "--format", "onnx", "--out", str(out)]) == 0
    return out


# (source, model): the in-repo reduced models (tests/fixtures/golden, always there) and
# ../shared/golden's full-size ones (skipped where absent)
PARITY = [("in-repo", "vit"), ("in-repo", "vit_t"), ("shared", "vit_t"), ("shared", "vit_small")]
FIXTURE_MODELS = {"vit": "vit_tiny.pt", "vit_t": "vit_t_tiny.pt"}


@pytest.fixture(scope="module", params=PARITY, ids=["-".join(p) for p in PARITY])
def all_masks_export(request, fixture_cases, tmp_path_factory):
    """A decoder returning all 4 masks (return_single_mask=False) and an encoder, for each
    golden model (shared vit_t's encoder is the one of :func:`vit_t_export`). Returns
    (name, export folder, encoder.onnx, checkpoint, cases, stride of the stored low-res logits)."""
    source, name = request.param
    if source == "shared":
        root = shared_golden(f"the full-size {name} reference cases")
        checkpoint, cases, stride = root / MODELS[name], np.load(root / "cases.npz"), 1
    else:
        checkpoint, cases = FIXTURES / FIXTURE_MODELS[name], fixture_cases
        stride = int(cases[f"{name}/0/low_res_stride"])
    out = tmp_path_factory.mktemp(f"onnx_all_{source}_{name}")
    reuse = (source, name) == ("shared", "vit_t")
    rc = main(["export", str(checkpoint), "--format", "onnx", "--out", str(out),
               "--parts", "decoder" if reuse else "encoder,decoder", "--all-masks"])
    assert rc == 0
    encoder = (request.getfixturevalue("vit_t_export") if reuse else out) / "encoder.onnx"
    return name, out, encoder, checkpoint, cases, stride


def test_files_and_config(vit_t_export):
    config = json.loads((vit_t_export / "config.json").read_text())
    assert config["model_type"] == "vit_t" and config["input_size"] == 1024
    assert config["embedding_shape"] == [1, 256, 64, 64] and config["low_res_mask_size"] == [256, 256]
    assert config["pixel_mean"] == [123.675, 116.28, 103.53] and config["pixel_std"] == [58.395, 57.12, 57.375]
    assert config["return_single_mask"] is True and config["opset"] >= 17
    for part, name in [("decoder", "decoder.onnx"), ("encoder", "encoder.onnx"), ("encoder_rgb", "encoder_rgb.onnx")]:
        assert config["files"][part]["file"] == name
        model = onnx.load(str(vit_t_export / name), load_external_data=False)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dec = onnx.load(str(vit_t_export / "decoder.onnx"))
    assert [i.name for i in dec.graph.input] == [
        "image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
    assert [o.name for o in dec.graph.output] == ["masks", "iou_predictions", "low_res_masks"]
    dims = [d.dim_param or d.dim_value for d in dec.graph.input[1].type.tensor_type.shape.dim]
    assert isinstance(dims[1], str)  # dynamic number of points


def _golden_inputs(golden_cases, name, case, predictor):
    """A golden case's predict() keyword arguments turned into SAM's ONNX inputs."""
    prefix = f"{name}/0/{case}/"
    kw = {k[len(prefix) + 3:]: golden_cases[k] for k in golden_cases.files if k.startswith(prefix + "in/")}
    coords, labels = [], []
    if "point_coords" in kw:
        coords += list(kw["point_coords"])
        labels += list(kw["point_labels"])
    if "box" in kw:
        coords += list(np.asarray(kw["box"], float).reshape(2, 2))
        labels += [2, 3]
    else:  # SAM's padding point
        coords.append([0.0, 0.0])
        labels.append(-1)
    coords = predictor.transform.apply_coords(np.asarray(coords, float), predictor.original_size)
    if "mask_input" in kw:
        mask, has = kw["mask_input"][None].astype(np.float32), np.ones(1, np.float32)
    else:  # the low-res size: 4× the embedding grid (256² for a 1024² model)
        side = 4 * predictor.model.prompt_encoder.image_embedding_size[0]
        mask, has = np.zeros((1, 1, side, side), np.float32), np.zeros(1, np.float32)
    inputs = {
        "point_coords": coords[None].astype(np.float32), "point_labels": np.asarray(labels, np.float32)[None],
        "mask_input": mask, "has_mask_input": has,
        "orig_im_size": np.asarray(predictor.original_size, np.float32),
    }
    return inputs, bool(kw["multimask_output"]), prefix


def test_golden_parity(all_masks_export):
    """encoder.onnx + decoder.onnx (all 4 masks) reproduce the reference outputs of every golden
    case at the golden tolerances: embedding, low-res logits, scores, masks."""
    name, out, encoder, checkpoint, golden_cases, s = all_masks_export
    image = golden_cases[f"{name}/0/image"]
    sam = build_sam(checkpoint=checkpoint)
    predictor = SamPredictor(sam, mode="reference")
    predictor.original_size = image.shape[:2]
    resized = predictor.transform.apply_image(image)
    pre = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float()).numpy()
    (embedding,) = session(encoder).run(None, {"image": pre})
    assert rel_l2(embedding, golden_cases[f"{name}/0/embedding"]) <= 1e-4

    decoder = session(out / "decoder.onnx")
    for case in CASES:
        inputs, multimask, prefix = _golden_inputs(golden_cases, name, case, predictor)
        masks, scores, low_res = decoder.run(None, {"image_embeddings": embedding, **inputs})
        assert masks.shape[:2] == (1, 4) and masks.shape[2:] == image.shape[:2]
        pick = slice(1, None) if multimask else slice(0, 1)  # output 0 is SAM's single-mask output
        assert rel_l2(low_res[0, pick, ::s, ::s], golden_cases[prefix + "out/low_res_logits"]) <= 1e-3, case
        assert np.abs(scores[0, pick] - golden_cases[prefix + "out/scores"]).max() <= 1e-3, case
        assert ((masks[0, pick] > 0) != golden_cases[prefix + "out/masks"]).mean() <= 1e-3, case

    # several prompts in one call (dynamic prompt axis): the golden boxes
    prefix = f"{name}/0/batched_boxes_multi/"
    boxes = predictor.transform.apply_boxes(golden_cases[prefix + "in/boxes"], image.shape[:2])
    side = 4 * sam.prompt_encoder.image_embedding_size[0]
    masks, scores, low_res = decoder.run(None, {
        "image_embeddings": embedding, "point_coords": boxes.reshape(-1, 2, 2).astype(np.float32),
        "point_labels": np.tile(np.float32([2, 3]), (len(boxes), 1)),
        "mask_input": np.zeros((1, 1, side, side), np.float32), "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.asarray(image.shape[:2], np.float32)})
    assert rel_l2(low_res[:, 1:, ::s, ::s], golden_cases[prefix + "out/low_res_logits"]) <= 1e-3
    assert np.abs(scores[:, 1:] - golden_cases[prefix + "out/scores"]).max() <= 1e-3
    assert ((masks[:, 1:] > 0) != golden_cases[prefix + "out/masks"]).mean() <= 1e-3


def test_sam_onnx_example(vit_t_export, golden_dir, golden_cases):
    """decoder.onnx called exactly as segment_anything's notebooks/onnx_model_example.ipynb
    does (embedding from SamPredictor, padding point, apply_coords, float32 inputs, masks >
    mask_threshold) gives the predictor's masks: one click → the best multimask output; a
    point + box → the single-mask output; then the click refined with the low-res logits."""
    image = golden_cases["vit_t/0/image"]
    sam = build_sam(checkpoint=golden_dir / "vit_t_random.pt")
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    image_embedding = predictor.get_image_embedding().cpu().numpy()
    ort_session = ort.InferenceSession(str(vit_t_export / "decoder.onnx"))

    # --- one point
    input_point = np.array([[500, 375]])
    input_label = np.array([1])
    onnx_coord = np.concatenate([input_point, np.array([[0.0, 0.0]])], axis=0)[None, :, :]
    onnx_label = np.concatenate([input_label, np.array([-1])], axis=0)[None, :].astype(np.float32)
    onnx_coord = predictor.transform.apply_coords(onnx_coord, image.shape[:2]).astype(np.float32)
    onnx_mask_input = np.zeros((1, 1, 256, 256), dtype=np.float32)
    onnx_has_mask_input = np.zeros(1, dtype=np.float32)
    ort_inputs = {
        "image_embeddings": image_embedding,
        "point_coords": onnx_coord,
        "point_labels": onnx_label,
        "mask_input": onnx_mask_input,
        "has_mask_input": onnx_has_mask_input,
        "orig_im_size": np.array(image.shape[:2], dtype=np.float32),
    }
    masks, scores, low_res_logits = ort_session.run(None, ort_inputs)
    masks = masks > predictor.model.mask_threshold
    assert masks.shape == (1, 1, *image.shape[:2]) and low_res_logits.shape == (1, 1, 256, 256)
    ref_masks, ref_scores, ref_low = predictor.predict(input_point, input_label, multimask_output=True)
    best = int(np.argmax(ref_scores))
    assert (masks[0, 0] != ref_masks[best]).mean() <= 1e-3
    assert abs(float(scores[0, 0]) - float(ref_scores[best])) <= 1e-3
    assert rel_l2(low_res_logits[0, 0], ref_low[best]) <= 1e-3

    # --- refine with the previous low-res logits and a second (negative) point
    input_point = np.array([[500, 375], [150, 100]])
    input_label = np.array([1, 0])
    onnx_coord = np.concatenate([input_point, np.array([[0.0, 0.0]])], axis=0)[None, :, :]
    onnx_label = np.concatenate([input_label, np.array([-1])], axis=0)[None, :].astype(np.float32)
    onnx_coord = predictor.transform.apply_coords(onnx_coord, image.shape[:2]).astype(np.float32)
    ort_inputs.update(point_coords=onnx_coord, point_labels=onnx_label, mask_input=low_res_logits,
                      has_mask_input=np.ones(1, dtype=np.float32))
    masks, scores, _ = ort_session.run(None, ort_inputs)
    ref_masks, ref_scores, _ = predictor.predict(input_point, input_label, mask_input=ref_low[best][None],
                                                 multimask_output=False)
    assert ((masks[0, 0] > 0) != ref_masks[0]).mean() <= 1e-3
    assert abs(float(scores[0, 0]) - float(ref_scores[0])) <= 1e-3

    # --- a point and a box: no padding point, box corners labelled 2 and 3
    input_box = np.array([125, 100, 400, 350])
    input_point = np.array([[300, 200]])
    input_label = np.array([0])
    onnx_box_coords = input_box.reshape(2, 2)
    onnx_box_labels = np.array([2, 3])
    onnx_coord = np.concatenate([input_point, onnx_box_coords], axis=0)[None, :, :]
    onnx_label = np.concatenate([input_label, onnx_box_labels], axis=0)[None, :].astype(np.float32)
    onnx_coord = predictor.transform.apply_coords(onnx_coord, image.shape[:2]).astype(np.float32)
    ort_inputs.update(point_coords=onnx_coord, point_labels=onnx_label, mask_input=onnx_mask_input,
                      has_mask_input=onnx_has_mask_input)
    masks, scores, _ = ort_session.run(None, ort_inputs)
    ref_masks, ref_scores, _ = predictor.predict(input_point, input_label, box=input_box, multimask_output=False)
    assert ((masks[0, 0] > 0) != ref_masks[0]).mean() <= 1e-3
    assert abs(float(scores[0, 0]) - float(ref_scores[0])) <= 1e-3


def test_rgb_encoder(vit_t_export, golden_dir, golden_cases):
    """encoder_rgb.onnx (uint8 H×W×3 in, resize/normalise/pad inside) matches the embedding of
    SamPredictor.set_image: its resize differs from PIL's by at most one grey level inside the
    image (rounding of PIL's two passes; more at the outermost pixels, where the two
    antialiasing filters treat the border differently)."""
    image = golden_cases["vit_t/0/image"]
    (embedding,) = session(vit_t_export / "encoder_rgb.onnx").run(None, {"input_image": image})
    assert embedding.shape == (1, 256, 64, 64)
    assert rel_l2(embedding, golden_cases["vit_t/0/embedding"]) <= 5e-3  # measured 1.8e-3

    from pocketsam.export.onnx_sam import preprocess_graph

    sam = build_sam(checkpoint=golden_dir / "vit_t_random.pt")
    pre = ort.InferenceSession(preprocess_graph(sam).SerializeToString())
    predictor = SamPredictor(sam)
    for shape in [(97, 130, 3), (1500, 1100, 3)]:  # enlarged, shrunk
        rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        resized = predictor.transform.apply_image(rgb)
        ref = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float()).numpy()
        (got,) = pre.run(None, {"input_image": rgb})
        h, w = resized.shape[:2]
        levels = np.abs(got - ref) * np.asarray(sam.pixel_std).reshape(1, 3, 1, 1)
        assert got.shape == ref.shape and np.all(got[..., h:, :] == 0) and np.all(got[..., w:] == 0)
        assert levels[..., 2:h - 2, 2:w - 2].max() <= 1.01


def test_tinysam_decoder_never_returns_single_mask_token(golden_dir, golden_cases, tmp_path):
    """TinySAM's decoder returns its best multimask output whatever the number of points
    (compared with the torch decoder on the golden embedding)."""
    assert main(["export", str(golden_dir / "vit_t_random.pt"), "--model-type", "tinysam", "--format", "onnx",
                 "--out", str(tmp_path), "--parts", "decoder"]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["multimask_only"] is True
    sam = build_sam("tinysam", checkpoint=golden_dir / "vit_t_random.pt")
    embedding = golden_cases["vit_t/0/embedding"].astype(np.float32)
    image = golden_cases["vit_t/0/image"]
    predictor = SamPredictor(sam)
    points = np.array([[500.0, 375.0], [200.0, 100.0], [0.0, 0.0]])
    coords = predictor.transform.apply_coords(points, image.shape[:2]).astype(np.float32)[None]
    labels = np.float32([[1, 1, -1]])
    masks, scores, low_res = session(tmp_path / "decoder.onnx").run(None, {
        "image_embeddings": embedding, "point_coords": coords, "point_labels": labels,
        "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.float32(image.shape[:2])})
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder((torch.from_numpy(coords[:, :2]), torch.tensor([[1, 1]])), None, None)
        all_low, all_iou = sam.mask_decoder.predict_masks(
            torch.from_numpy(embedding), sam.prompt_encoder.get_dense_pe(), sparse, dense)
    best = int(torch.argmax(all_iou[0, 1:])) + 1
    assert abs(float(scores[0, 0]) - float(all_iou[0, best])) <= 1e-3
    assert rel_l2(low_res[0, 0], all_low[0, best].numpy()) <= 1e-3
    ref = sam.postprocess_masks(all_low[:, best:best + 1], (768, 1024), image.shape[:2])
    assert ((masks[0, 0] > 0) != (ref[0, 0] > 0).numpy()).mean() <= 1e-3


def test_torch_module_matches_onnx(tmp_path):
    """The server's fallback runs SamOnnxDecoder in torch: same outputs as its ONNX export,
    for any number of points (the export was traced with 3)."""
    from pocketsam.export.onnx_sam import SamOnnxDecoder, export_decoder

    sam = build_sam()  # the bundled 256² model
    export_decoder(sam, tmp_path / "decoder.onnx")
    decoder, module = session(tmp_path / "decoder.onnx"), SamOnnxDecoder(sam).eval()
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((1, 256, 16, 16)).astype(np.float32)
    for n in (1, 2, 3, 5):
        inputs = {
            "image_embeddings": embedding,
            "point_coords": rng.uniform(0, 256, (1, n, 2)).astype(np.float32),
            "point_labels": np.concatenate([np.ones((1, n - 1)), -np.ones((1, 1))], 1).astype(np.float32),
            "mask_input": np.zeros((1, 1, 64, 64), np.float32), "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.float32([300, 200]),
        }
        got = decoder.run(None, inputs)
        ref = module(*(torch.from_numpy(v) for v in inputs.values()))
        for a, b in zip(got, ref):
            assert a.shape == tuple(b.shape)
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-3)


def test_cli_errors(tmp_path, capsys):
    ckpt = str(FIXTURE_VIT_T)  # any valid checkpoint: the in-repo one
    (tmp_path / "file").write_text("x")
    cases = [
        (["--format", "onnx", "--out", str(tmp_path / "o"), "--dtype", "fp16"], "--dtype fp16 is not available"),
        (["--format", "onnx", "--out", str(tmp_path / "o"), "--parts", "decoder,nope"], "unknown files (nope)"),
        (["--format", "onnx", "--out", str(tmp_path / "file"), "--parts", "decoder"], "is not a directory"),
        (["--format", "pth", "--out", str(tmp_path / "x.safetensors")], "does not match"),
        (["--out", str(tmp_path / "dir")], "--format onnx"),
    ]
    for extra, message in cases:
        assert main(["export", ckpt, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_int8_encoder_from_an_int8_artifact(golden_int8_artifact, golden_vit_t, tmp_path):
    """--int8 with a `pocketsam quantize` artifact as the checkpoint: its int8 encoder, with
    encoder.onnx's interface, close to the float embedding."""
    assert main(["export", str(golden_int8_artifact), "--format", "onnx", "--int8", "--parts", "decoder",
                 "--out", str(tmp_path)]) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    entry = config["files"]["encoder_int8"]
    assert entry["file"] == "encoder_int8.onnx" and entry["inputs"] == ["image"] and entry["calibration_images"] == 1
    model = onnx.load(str(tmp_path / "encoder_int8.onnx"))
    assert [o.name for o in model.graph.output] == ["image_embeddings"]
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    sam = build_sam(checkpoint=golden_int8_artifact)
    resized = SamPredictor(sam).transform.apply_image(golden_vit_t.image)
    pre = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float()).numpy()
    (embedding,) = session(tmp_path / "encoder_int8.onnx").run(None, {"image": pre})
    assert embedding.shape == golden_vit_t.embedding.shape
    assert rel_l2(embedding, golden_vit_t.embedding) <= 0.1


def test_int8_encoder_calibrated_on_a_folder(tmp_path, tiny_sam, capsys):
    from PIL import Image as PILImage

    from pocketsam.checkpoints import save_checkpoint

    ckpt = save_checkpoint(tiny_sam, tmp_path / "tiny.safetensors")
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        PILImage.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(calib / f"{i}.png")
    assert main(["export", str(ckpt), "--format", "onnx", "--calib", str(calib), "--parts", "decoder",
                 "--out", str(tmp_path / "x")]) == 2
    assert "add --int8" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--format", "onnx", "--int8", "--calib", str(tmp_path / "none"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    out = tmp_path / "onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--int8", "--calib", str(calib), "--parts", "decoder",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert set(config["files"]) == {"decoder", "encoder_int8"}
    assert config["files"]["encoder_int8"]["calibration_images"] == 2
    (embedding,) = session(out / "encoder_int8.onnx").run(None, {"image": np.zeros((1, 3, 256, 256), np.float32)})
    assert embedding.shape == (1, 32, 16, 16) and np.isfinite(embedding).all()
