"""SamPredictor behaviour for any image size / aspect ratio, and its API contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pocketsam import SamPredictor
from pocketsam.errors import InputError
from pocketsam.preprocess import ResizeLongestSide


def random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("hw", [(3, 5), (1, 1), (600, 200), (120, 400), (256, 256), (257, 100)],
                         ids=["tiny", "single-pixel", "portrait", "landscape", "exact", "odd"])
def test_any_size_gives_masks_at_original_size(tiny_sam, hw):
    predictor = SamPredictor(tiny_sam)
    image = random_image(*hw)
    predictor.set_image(image)
    h, w = hw
    assert predictor.original_size == hw
    assert max(predictor.input_size) == 256
    assert predictor.input_size == ResizeLongestSide.get_preprocess_shape(h, w, 256)
    masks, scores, low_res = predictor.predict(np.array([[w / 2, h / 2]]), np.array([1]))
    assert masks.shape == (3, h, w) and masks.dtype == bool
    assert scores.shape == (3,) and low_res.shape == (3, 64, 64)


@pytest.mark.parametrize("hw", [(96, 200), (200, 96), (128, 128)])
def test_prompts_map_consistently_across_scales(tiny_sam, hw):
    """The same scene at two scales (one already at the model's size) gives the same
    logits for the same physical prompt: coordinate transforms are right for any aspect."""
    image = random_image(*hw, seed=1)
    small, big = SamPredictor(tiny_sam), SamPredictor(tiny_sam)
    small.set_image(image)
    resized = small.transform.apply_image(image)  # exactly what the model sees
    big.set_image(resized)
    torch.testing.assert_close(small.features, big.features)
    h, w = hw
    point = np.array([[w * 0.3, h * 0.6]])
    box = np.array([w * 0.1, h * 0.2, w * 0.7, h * 0.9])
    sy, sx = resized.shape[0] / h, resized.shape[1] / w
    _, s1, lr1 = small.predict(point, np.array([1]), box=box)
    _, s2, lr2 = big.predict(point * [sx, sy], np.array([1]), box=box * [sx, sy, sx, sy])
    np.testing.assert_allclose(lr1, lr2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-5)


def test_bgr_input_is_flipped(tiny_sam):
    image = random_image(40, 60)
    a, b = SamPredictor(tiny_sam), SamPredictor(tiny_sam)
    a.set_image(image)
    b.set_image(image[..., ::-1].copy(), image_format="BGR")
    torch.testing.assert_close(a.features, b.features)


def test_state_and_errors(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    assert not predictor.is_image_set and predictor.features is None
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(np.array([[1, 1]]), np.array([1]))
    with pytest.raises(RuntimeError):
        predictor.get_image_embedding()
    with pytest.raises(InputError, match="H×W×3"):
        predictor.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        predictor.set_image(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InputError, match="long side"):
        predictor.set_torch_image(torch.zeros(1, 3, 100, 100), (100, 100))
    predictor.set_image(random_image(20, 30))
    assert predictor.is_image_set and predictor.device == torch.device("cpu")
    assert tuple(predictor.get_image_embedding().shape) == (1, 32, 16, 16)
    with pytest.raises(InputError, match="labels"):
        predictor.predict(np.array([[1, 1], [2, 2]]), np.array([1]))
    predictor.reset_image()
    assert not predictor.is_image_set


def test_batched_predict_torch_and_mask_input(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(random_image(50, 80))
    coords = predictor.transform.apply_coords_torch(torch.tensor([[[10.0, 10.0]], [[40.0, 30.0]]]), (50, 80))
    labels = torch.ones(2, 1, dtype=torch.int)
    masks, iou, low_res = predictor.predict_torch(coords, labels, multimask_output=False)
    assert tuple(masks.shape) == (2, 1, 50, 80) and tuple(iou.shape) == (2, 1)
    # feeding the low-res logits back as mask input
    masks2, _, _ = predictor.predict_torch(coords, labels, mask_input=low_res, multimask_output=True)
    assert tuple(masks2.shape) == (2, 3, 50, 80)
    # the numpy path agrees with the batched path
    m, s, lr = predictor.predict(np.array([[40.0, 30.0]]), np.array([1]), multimask_output=False)
    np.testing.assert_allclose(lr[0], low_res[1, 0].numpy(), rtol=1e-4, atol=1e-4)


def test_predict_batch_takes_original_pixels(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(random_image(50, 80))
    pts = torch.tensor([[[10.0, 10.0]], [[40.0, 30.0]]])
    boxes = np.array([[5.0, 5.0, 30.0, 40.0], [20.0, 10.0, 70.0, 45.0]])
    labels = torch.ones(2, 1, dtype=torch.int)
    # tensors: mapped in float32, exactly as apply_coords_torch + predict_torch
    resized = predictor.transform.apply_coords_torch(pts, (50, 80))
    want = predictor.predict_torch(resized, labels, return_logits=True)
    got = predictor.predict_batch(pts, labels, return_logits=True)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    # numpy: mapped in float64 (the generators' path); boxes alike
    resized64 = torch.as_tensor(predictor.transform.apply_boxes(boxes, (50, 80)))
    low, iou = predictor.predict_low_res(None, resized64, None, False)
    low2, iou2 = predictor.predict_batch_low_res(boxes=boxes, multimask_output=False)
    assert torch.equal(low, low2) and torch.equal(iou, iou2)
    masks, _, low_res = predictor.predict_batch(boxes=boxes, multimask_output=False)
    assert tuple(masks.shape) == (2, 1, 50, 80) and masks.dtype == torch.bool
    assert torch.equal(masks, predictor.upsample(low_res) > tiny_sam.mask_threshold)
    with pytest.raises(InputError, match="point_labels must be supplied"):
        predictor.predict_batch(pts)


def test_no_mask_prompt_is_one_map_for_all_prompts(tiny_sam):
    pts = torch.zeros(3, 1, 2), torch.ones(3, 1, dtype=torch.int)
    sparse, dense = tiny_sam.prompt_encoder(pts, None, None)
    assert sparse.shape[0] == 3 and dense.shape[0] == 1  # the explicit signal: a batch of 1
    _, dense_masks = tiny_sam.prompt_encoder(pts, None, torch.zeros(3, 1, 64, 64))
    assert dense_masks.shape[0] == 3


def test_transform_roundtrip_boxes():
    t = ResizeLongestSide(1024)
    boxes = np.array([[0, 0, 639, 479], [10, 20, 30, 40]], dtype=float)
    out = t.apply_boxes(boxes, (480, 640))
    np.testing.assert_allclose(out, boxes * 1.6)
    torch.testing.assert_close(
        t.apply_boxes_torch(torch.as_tensor(boxes), (480, 640)), torch.as_tensor(out, dtype=torch.float32)
    )


def test_non_finite_outputs_are_one_clear_error(tiny_sam):
    """Weights that turn NaN after loading (or an overflowing speed mode): no NaN score or
    silently empty mask comes out, but one PocketSamError."""
    from pocketsam.errors import PocketSamError

    predictor = SamPredictor(tiny_sam)
    predictor.set_image(random_image(40, 50))
    predictor.predict(np.array([[10, 10]]), np.array([1]))  # fine before
    with torch.no_grad():
        tiny_sam.mask_decoder.iou_prediction_head.layers[-1].bias.fill_(float("nan"))
    for mode in ("default", "reference"):
        p = SamPredictor(tiny_sam, mode=mode)
        p.set_image(random_image(40, 50))
        with pytest.raises(PocketSamError, match="NaN or infinite"):
            p.predict(np.array([[10, 10]]), np.array([1]))
