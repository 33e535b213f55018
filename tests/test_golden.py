"""pocketsam reproduces the official implementations' outputs.

Two sets of reference cases (see tests/conftest.py): the in-repo reduced models of each
official family (``vit``: segment-anything's ViT; ``vit_t``: MobileSAM's TinyViT; ``tinysam``:
TinySAM's own predictor, same weights as ``vit_t``) always run; ``../shared/golden``'s
full-size ``vit_t`` and ``vit_small`` run where that folder is present and skip otherwise.
Tolerances are those of ../shared/golden/README.md.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from conftest import FIXTURES, read_case, shared_golden

from pocketsam import SamPredictor, build_sam

# (source, model): "in-repo" = tests/fixtures/golden, "shared" = ../shared/golden
MODELS = [("in-repo", "vit"), ("in-repo", "vit_t"), ("in-repo", "tinysam"), ("shared", "vit_t"), ("shared", "vit_small")]
CHECKPOINTS = {("in-repo", "vit"): "vit_tiny.pt", ("in-repo", "vit_t"): "vit_t_tiny.pt",
               ("in-repo", "tinysam"): "vit_t_tiny.pt",  # TinySAM: the same layout and weights
               ("shared", "vit_t"): "vit_t_random.pt", ("shared", "vit_small"): "vit_small_random.pt"}
CASES = ["point_multi", "points_posneg_single", "box_single", "box_point_multi", "mask_refine_single"]
# TinySAM's reference predictor always returns the three multimask outputs
TINYSAM_CASES = ["point_multi", "points_posneg_multi", "box_multi", "box_point_multi", "mask_refine_multi"]


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _id(model) -> str:
    return "-".join(model)


def pytest_generate_tests(metafunc):
    if "golden" not in metafunc.fixturenames:
        return
    if "case" in metafunc.fixturenames:
        combos = [(m, c) for m in MODELS for c in (TINYSAM_CASES if m[1] == "tinysam" else CASES)]
        metafunc.parametrize("golden, case", combos, indirect=["golden"], scope="module",
                             ids=[f"{_id(m)}-{c}" for m, c in combos])
    else:
        metafunc.parametrize("golden", MODELS, indirect=True, scope="module", ids=[_id(m) for m in MODELS])


@dataclass
class Golden:
    model: str
    predictor: SamPredictor
    cases: object
    data: str  # key prefix of the image and embedding ("tinysam" shares vit_t's)
    stride: int  # low-res logits are stored as [..., ::stride, ::stride]

    def reference(self, case: str) -> tuple[dict, dict]:
        return read_case(self.cases, f"{self.model}/0/{case}/")

    def low_res(self, logits) -> np.ndarray:
        return np.asarray(logits)[..., :: self.stride, :: self.stride]


_BUILT: dict[tuple[str, str], Golden] = {}


@pytest.fixture(scope="module")
def golden(request, fixture_cases, tmp_path_factory) -> Golden:
    # pytest sets a module-scoped fixture up again whenever its parameter changes between
    # tests, and the parametrisations above interleave: build each model once
    if request.param not in _BUILT:
        _BUILT[request.param] = _build(*request.param, fixture_cases, tmp_path_factory)
    return _BUILT[request.param]


def _build(source: str, model: str, fixture_cases, tmp_path_factory) -> Golden:
    if source == "shared":
        root = shared_golden(f"the full-size {model} reference cases")
        cases, stride = np.load(root / "cases.npz"), 1
    else:
        root, cases = FIXTURES, fixture_cases
        stride = int(cases[f"{'vit_t' if model == 'tinysam' else model}/0/low_res_stride"])
    checkpoint = root / CHECKPOINTS[source, model]
    if model == "tinysam":  # detected from the file name, as for the official tinysam_*.pth
        checkpoint = shutil.copy(checkpoint, tmp_path_factory.mktemp("tinysam") / "tinysam_tiny.pt")
    sam = build_sam(checkpoint=checkpoint)
    assert bool(sam.mask_decoder.multimask_only) == (model == "tinysam")
    data = "vit_t" if model == "tinysam" else model
    predictor = SamPredictor(sam)
    predictor.set_image(cases[f"{data}/0/image"])
    return Golden(model, predictor, cases, data, stride)


def test_embedding(golden):
    emb = golden.predictor.get_image_embedding().numpy()
    ref = golden.cases[f"{golden.data}/0/embedding"]
    assert emb.shape == ref.shape
    assert rel_l2(emb, ref) <= 1e-4


def _assert_close(golden, masks, scores, low_res, ref):
    assert masks.shape == ref["masks"].shape and masks.dtype == bool
    assert rel_l2(golden.low_res(low_res), ref["low_res_logits"]) <= 1e-3
    assert np.abs(scores - ref["scores"]).max() <= 1e-3
    assert (masks != ref["masks"]).mean() <= 1e-3


def test_predict_cases(golden, case):
    kwargs, ref = golden.reference(case)
    _assert_close(golden, *golden.predictor.predict(**kwargs), ref)
    if golden.model == "tinysam":
        # a single-mask request returns the multimask output with the highest predicted IoU
        best = int(np.argmax(ref["scores"]))
        single = golden.predictor.predict(**{**kwargs, "multimask_output": False})
        _assert_close(golden, *single, {k: v[best:best + 1] for k, v in ref.items()})


def test_batched_boxes(golden):
    predictor = golden.predictor
    _, ref = golden.reference("batched_boxes_multi")
    boxes = golden.cases[f"{golden.model}/0/batched_boxes_multi/in/boxes"]
    boxes = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes), predictor.original_size)
    masks, scores, low_res = predictor.predict_torch(None, None, boxes=boxes, multimask_output=True)
    _assert_close(golden, masks.numpy(), scores.numpy(), low_res.numpy(), ref)


def test_return_logits_thresholds_to_masks(golden):
    kwargs, _ = golden.reference("point_multi")
    logits, _, _ = golden.predictor.predict(**kwargs, return_logits=True)
    masks, _, _ = golden.predictor.predict(**kwargs)
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits > 0.0, masks)
