"""Library errors (issue 24 items 8, 14, 16): every one is a PocketSamError with a hint that
is also the built-in type segment_anything raises in the same place, so drop-in code that
catches ValueError / TypeError / RuntimeError keeps working; the library's prompt rule is
the command line's."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pocketsam import SamAutomaticMaskGenerator, SamPredictor, build_sam
from pocketsam.errors import PocketSamError


@pytest.fixture()
def predictor(tiny_sam):
    p = SamPredictor(tiny_sam)
    p.set_image(np.full((60, 80, 3), 128, np.uint8))
    return p


def test_predict_before_set_image_is_a_runtime_error(tiny_sam):
    with pytest.raises(RuntimeError, match="set_image") as info:
        SamPredictor(tiny_sam).predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]))
    assert isinstance(info.value, PocketSamError) and info.value.hint


def test_wrong_types_and_values_keep_their_builtin_types(tiny_sam):
    with pytest.raises(TypeError) as info:
        build_sam(checkpoint=123)
    assert isinstance(info.value, PocketSamError)
    with pytest.raises(ValueError) as info:
        SamAutomaticMaskGenerator(tiny_sam, points_per_side=0)
    assert isinstance(info.value, PocketSamError)


@pytest.mark.parametrize("kwargs, message", [
    ({"point_coords": np.array([[80.0, 10.0]]), "point_labels": np.array([1])}, "outside the image"),
    ({"point_coords": np.array([[-1.0, 10.0]]), "point_labels": np.array([1])}, "outside the image"),
    ({"box": np.array([50.0, 10.0, 20.0, 40.0])}, "empty or inverted"),
    ({"box": np.array([10.0, 10.0, 90.0, 40.0])}, "goes outside the image"),
])
def test_predict_refuses_what_the_cli_refuses(predictor, kwargs, message):
    """The same rule as `pocketsam segment` (pocketsam.prompts.check_prompts_inside)."""
    with pytest.raises(ValueError, match=message) as info:
        predictor.predict(**kwargs)
    assert isinstance(info.value, PocketSamError)
    predictor.predict(point_coords=np.array([[79.0, 59.0]]), point_labels=np.array([1]))  # the last pixel is fine


def test_too_many_points_are_refused_before_any_work(predictor):
    """100,000 points in one predict call ran for minutes; now one error, at once."""
    coords = np.random.default_rng(0).uniform(0, 59, (100_000, 2))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="100,000 points in one prompt"):
        predictor.predict(point_coords=coords, point_labels=np.ones(len(coords)))
    assert time.perf_counter() - start < 5
