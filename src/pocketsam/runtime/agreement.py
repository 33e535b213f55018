"""How closely a speed path's masks follow float32's: the measure behind ``fast``'s choice,
``pocketsam quantize``'s recorded quality and the bench's IoU column.

The prompt set: a 3×3 grid of single points, three boxes and one point+box, placed by
fractions of the image size; every prompt's three multimask outputs are compared.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from pocketsam.data.synth import image_rng, render_scene
from pocketsam.masks import upsample_logits
from pocketsam.preprocess import Preprocess


def accuracy_prompts(h: int, w: int) -> list[dict]:
    """The 13 prompts (``SamPredictor.predict`` keyword dicts) for an ``h``×``w`` image."""
    prompts = []
    for fy in (0.25, 0.5, 0.75):
        for fx in (0.25, 0.5, 0.75):
            prompts.append({"point_coords": np.array([[w * fx, h * fy]]), "point_labels": np.array([1])})
    for x0, y0, x1, y1 in ((0.1, 0.1, 0.5, 0.6), (0.4, 0.3, 0.9, 0.9), (0.2, 0.5, 0.6, 0.95)):
        prompts.append({"box": np.array([w * x0, h * y0, w * x1, h * y1])})
    prompts.append({"point_coords": np.array([[w * 0.5, h * 0.5]]), "point_labels": np.array([1]),
                    "box": np.array([w * 0.3, h * 0.3, w * 0.7, h * 0.7])})
    return prompts


def scene(size: int, seed: int = 0, index: int = 0) -> np.ndarray:
    """One deterministic scene of pocketsam's generator, ``size``², uint8 RGB: an image to
    compare paths on when the user gave none."""
    return render_scene(image_rng(seed, index), size, size).image


def prompt_kind(prompt: dict) -> str:
    return "point+box" if "box" in prompt and "point_coords" in prompt else ("box" if "box" in prompt else "point")


@torch.no_grad()
def _masks(engine: nn.Module, embedding: torch.Tensor, prompt: dict, pre: Preprocess,
           size: tuple[int, int]) -> torch.Tensor:
    """The three multimask outputs of ``prompt`` (image pixels) at image size, as bool."""
    points = boxes = None
    if "point_coords" in prompt:
        coords = torch.as_tensor(pre.coords(prompt["point_coords"], size), dtype=torch.float32)[None]
        points = (coords, torch.as_tensor(prompt["point_labels"])[None])
    if "box" in prompt:
        boxes = torch.as_tensor(pre.boxes(prompt["box"], size), dtype=torch.float32)
    sparse, dense = engine.prompt_encoder(points, boxes, None)
    low_res, _ = engine.mask_decoder(embedding, engine.prompt_encoder.get_dense_pe(), sparse, dense, True)
    return upsample_logits(low_res, pre.input_size(size), size, pre.img_size)[0] > 0


def _iou_into(kinds: dict[str, list[float]], kind: str, a: torch.Tensor, b: torch.Tensor) -> None:
    for x, y in zip(a, b):
        union = (x | y).sum()
        kinds[kind].append(float((x & y).sum() / union) if union else 1.0)


def _summary(kinds: dict[str, list[float]], errs: list[float], n_images: int, **extra) -> dict:
    every = [v for vs in kinds.values() for v in vs]
    return {"mask_iou_vs_fp32": float(np.mean(every)),
            **{f"mask_iou_{k}": float(np.mean(v)) for k, v in kinds.items() if v},
            "embedding_rel_l2": float(np.mean(errs)), "images": n_images, **extra}


def embedding_ious(engine: nn.Module, reference: torch.Tensor, test: torch.Tensor, size: tuple[int, int],
                   points_only: bool = False, pre: Preprocess | None = None) -> dict[str, list[float]]:
    """The IoU of every mask decoded from embedding ``test`` against the same prompt's mask
    from ``reference`` (both 1×C×S/16×S/16, decoded by ``engine``), for an image of
    ``size`` (H, W), by prompt kind (``point``, ``box``, ``point+box``)."""
    pre = pre or Preprocess.for_model(engine)
    kinds: dict[str, list[float]] = {"point": [], "box": [], "point+box": []}
    with torch.no_grad():
        for prompt in accuracy_prompts(*size):
            if points_only and "box" in prompt:
                continue
            _iou_into(kinds, prompt_kind(prompt), _masks(engine, reference, prompt, pre, size),
                      _masks(engine, test, prompt, pre, size))
    return kinds


def embedding_agreement(reference: nn.Module, embed: Callable[[torch.Tensor], torch.Tensor],
                        images: Sequence[np.ndarray], points_only: bool = False) -> dict:
    """Like :func:`mask_agreement` for an encoder alone: ``embed`` (the encoder's input
    1×3×S×S → embedding) against ``reference``'s encoder, both embeddings decoded by
    ``reference``'s decoder, so only the encoder differs (another runtime's encoder, such
    as OpenVINO's). ``points_only``: the 3×3 grid of single clicks only. Adds
    ``per_image`` (mean IoU per image)."""
    pre = Preprocess.for_model(reference)
    kinds: dict[str, list[float]] = {"point": [], "box": [], "point+box": []}
    errs, per_image = [], []
    with torch.no_grad():
        for image in images:
            size = image.shape[:2]
            x = pre.image(image, reference.device)
            e_ref, e_test = reference.image_encoder(x), embed(x).float()
            errs.append(float((e_test - e_ref).norm() / e_ref.norm()))
            mine = embedding_ious(reference, e_ref, e_test, size, points_only, pre)
            for k, v in mine.items():
                kinds[k] += v
            per_image.append(float(np.mean([v for vs in mine.values() for v in vs])))
    return _summary(kinds, errs, len(images), per_image=per_image)


def mask_agreement(reference: nn.Module, test: nn.Module, images: Sequence[np.ndarray]) -> dict:
    """Mean mask IoU of the inference copy ``test`` against ``reference`` (float32's), over
    :func:`accuracy_prompts` on each image; per prompt kind too, and the embedding's mean
    relative L2 error.

    Args:
        reference, test: inference copies (:func:`pocketsam.runtime.optimize`) of one model.
        images: uint8 H×W×3.
    """
    pre = Preprocess.for_model(reference)
    kinds: dict[str, list[float]] = {"point": [], "box": [], "point+box": []}
    errs = []
    with torch.no_grad():
        for image in images:
            size = image.shape[:2]
            x = pre.image(image, reference.device)
            e_ref, e_test = reference.image_encoder(x), test.image_encoder(x)
            errs.append(float((e_test - e_ref).norm() / e_ref.norm()))
            for prompt in accuracy_prompts(*size):
                _iou_into(kinds, prompt_kind(prompt), _masks(reference, e_ref, prompt, pre, size),
                          _masks(test, e_test, prompt, pre, size))
    return _summary(kinds, errs, len(images))
