"""The prompt set on which a speed mode's masks are compared with float32's (``pocketsam
bench``, ``pocketsam quantize``'s recorded quality, ``fast``'s checks): a 3×3 grid of
single points, three boxes and one point+box, placed by fractions of the image size."""

from __future__ import annotations


def accuracy_prompts(h: int, w: int) -> list[dict]:
    """The 13 prompts (``SamPredictor.predict`` keyword dicts) for an ``h``×``w`` image."""
    import numpy as np

    prompts = []
    for fy in (0.25, 0.5, 0.75):
        for fx in (0.25, 0.5, 0.75):
            prompts.append({"point_coords": np.array([[w * fx, h * fy]]), "point_labels": np.array([1])})
    for x0, y0, x1, y1 in ((0.1, 0.1, 0.5, 0.6), (0.4, 0.3, 0.9, 0.9), (0.2, 0.5, 0.6, 0.95)):
        prompts.append({"box": np.array([w * x0, h * y0, w * x1, h * y1])})
    prompts.append({"point_coords": np.array([[w * 0.5, h * 0.5]]), "point_labels": np.array([1]),
                    "box": np.array([w * 0.3, h * 0.3, w * 0.7, h * 0.7])})
    return prompts
