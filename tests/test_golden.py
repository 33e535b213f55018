"""pocketsam reproduces the official implementations' outputs (../shared/golden)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketsam import SamPredictor, build_sam

CASES = ["point_multi", "points_posneg_single", "box_single", "box_point_multi", "mask_refine_single"]
MODELS = {"vit_t": "vit_t_random.pt", "vit_small": "vit_small_random.pt"}


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module", params=list(MODELS))
def golden_predictor(request, golden_dir, golden_cases):
    name = request.param
    predictor = SamPredictor(build_sam(checkpoint=golden_dir / MODELS[name]))
    predictor.set_image(golden_cases[f"{name}/0/image"])
    return name, predictor


def test_embedding(golden_predictor, golden_cases):
    name, predictor = golden_predictor
    emb = predictor.get_image_embedding()
    assert tuple(emb.shape) == (1, 256, 64, 64)
    assert rel_l2(emb.numpy(), golden_cases[f"{name}/0/embedding"]) <= 1e-4


@pytest.mark.parametrize("case", CASES)
def test_predict_cases(golden_predictor, golden_cases, case):
    name, predictor = golden_predictor
    prefix = f"{name}/0/{case}/"
    kwargs = {k[len(prefix) + 3 :]: golden_cases[k] for k in golden_cases.files if k.startswith(prefix + "in/")}
    kwargs["multimask_output"] = bool(kwargs["multimask_output"])
    masks, scores, low_res = predictor.predict(**kwargs)
    ref_masks = golden_cases[prefix + "out/masks"]
    assert masks.shape == ref_masks.shape and masks.dtype == bool
    assert rel_l2(low_res, golden_cases[prefix + "out/low_res_logits"]) <= 1e-3
    assert np.abs(scores - golden_cases[prefix + "out/scores"]).max() <= 1e-3
    assert (masks != ref_masks).mean() <= 1e-3


def test_batched_boxes(golden_predictor, golden_cases):
    name, predictor = golden_predictor
    prefix = f"{name}/0/batched_boxes_multi/"
    boxes = predictor.transform.apply_boxes_torch(torch.as_tensor(golden_cases[prefix + "in/boxes"]), predictor.original_size)
    masks, scores, low_res = predictor.predict_torch(None, None, boxes=boxes, multimask_output=True)
    assert tuple(masks.shape) == golden_cases[prefix + "out/masks"].shape
    assert rel_l2(low_res.numpy(), golden_cases[prefix + "out/low_res_logits"]) <= 1e-3
    assert np.abs(scores.numpy() - golden_cases[prefix + "out/scores"]).max() <= 1e-3
    assert (masks.numpy() != golden_cases[prefix + "out/masks"]).mean() <= 1e-3


def test_return_logits_thresholds_to_masks(golden_predictor, golden_cases):
    name, predictor = golden_predictor
    prefix = f"{name}/0/point_multi/"
    coords, labels = golden_cases[prefix + "in/point_coords"], golden_cases[prefix + "in/point_labels"]
    logits, _, _ = predictor.predict(coords, labels, return_logits=True)
    masks, _, _ = predictor.predict(coords, labels)
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits > 0.0, masks)


def test_tinysam_single_mask_is_best_multimask(golden_dir, golden_cases):
    """TinySAM's decoder was distilled on the multimask outputs: a single-mask request
    returns the multimask output with the highest predicted IoU."""
    predictor = SamPredictor(build_sam("tinysam", checkpoint=golden_dir / "vit_t_random.pt"))
    predictor.set_torch_image(
        torch.zeros(1, 3, 1024, 1024), (1024, 1024)
    )  # cheap image; only decoder behaviour matters here
    point = np.array([[400.0, 300.0]]), np.array([1])
    multi, multi_scores, multi_lr = predictor.predict(*point, multimask_output=True)
    single, single_scores, single_lr = predictor.predict(*point, multimask_output=False)
    best = int(np.argmax(multi_scores))
    assert single.shape == (1, 1024, 1024)
    np.testing.assert_allclose(single_scores[0], multi_scores[best], rtol=1e-5)
    np.testing.assert_allclose(single_lr[0], multi_lr[best], rtol=1e-4, atol=1e-4)
