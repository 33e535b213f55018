"""Embed once, prompt many times: drop-in for ``segment_anything.SamPredictor``."""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

from pocketsam.checkpoints.fingerprint import weights_key
from pocketsam.errors import InputError, NotReadyError, PocketSamError
from pocketsam.masks import upsample_logits
from pocketsam.models.sam import Sam
from pocketsam.preprocess import Preprocess
from pocketsam.prompts import check_prompt_arrays, check_prompt_count
from pocketsam.runtime import optimize

#: Batched prompts in image pixels: numpy arrays or tensors.
Array = Union[np.ndarray, torch.Tensor]


class SamPredictor:
    """Compute an image embedding once with :meth:`set_image`, then predict masks for any
    number of prompts with :meth:`predict` (one prompt set, numpy, original pixels),
    :meth:`predict_batch` (batched, original pixels) or :meth:`predict_torch` (batched
    tensors in the resized frame). :meth:`predict_low_res` and
    :meth:`predict_batch_low_res` stop before upsampling; :meth:`upsample` takes their
    low-res logits to the image size.

    ``mode`` picks the inference path (see :mod:`pocketsam.runtime`): ``"default"`` runs a
    float32 inference copy with BatchNorm folded, channels-last convolutions and fused
    activations (same results as ``"reference"`` within float32 rounding);
    ``"bf16"``, ``"int8"``, ``"fast"``, ``"compile"``, ``"onnx"`` are opt-in;
    ``"reference"`` runs :attr:`model` as is. ``None`` (the default) is the model's own
    preference: ``"int8"`` for a model loaded from an int8 artifact (``build_sam(checkpoint=
    OUT)`` of ``pocketsam quantize``), else ``"default"``. :attr:`model` itself is never
    modified; the inference copy is rebuilt when the model's weights change or it is put in
    training mode.
    """

    def __init__(self, sam_model: Sam, mode: str | None = None, **speed_options) -> None:
        self.model = sam_model
        copy_of = sam_model.info.speed  # an inference copy (pocketsam.runtime.optimize) runs as made
        self.mode = mode or (copy_of.mode if copy_of else None) or sam_model.info.preferred_mode or "default"
        self.speed_options = speed_options
        self.pre = Preprocess.for_model(sam_model)
        self.transform = self.pre.transform  # segment_anything's attribute (ResizeLongestSide)
        self._fast = self._fast_key = None
        self.reset_image()

    @property
    def engine(self) -> Sam:
        """The model that runs: :attr:`model` in ``reference`` mode or while training, else
        its (cached) inference copy for :attr:`mode`."""
        if self.mode == "reference" or self.model.training:
            return self.model
        key = weights_key(self.model)
        if self._fast is None or key != self._fast_key:
            self._fast = optimize(self.model, self.mode, **self.speed_options)
            self._fast_key = key
        return self._fast

    @property
    def speed_path(self) -> str:
        """Which inference path runs, in words (for ``fast``: what it chose and why)."""
        if self.mode == "reference" or self.model.training:
            return "reference"
        return self.engine.info.speed.describe()

    # ------------------------------------------------------------------ image
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Embed an H×W×3 uint8 image (``image_format`` 'RGB' or 'BGR')."""
        if image_format not in ("RGB", "BGR"):
            raise InputError(f"image_format must be 'RGB' or 'BGR', not {image_format!r}")
        image = check_image(image)
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        self.set_torch_image(self.pre.resized_tensor(image, self.device), image.shape[:2])

    @torch.inference_mode()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Embed a 1×3×h×w tensor already resized with :attr:`transform` (long side = img_size)."""
        size = self.model.image_encoder.img_size
        if transformed_image.ndim != 4 or transformed_image.shape[1] != 3 or max(transformed_image.shape[2:]) != size:
            raise InputError(
                f"set_torch_image expects a B×3×h×w tensor with long side {size}, "
                f"got shape {tuple(transformed_image.shape)}",
                "resize with predictor.transform.apply_image_torch first",
            )
        self.reset_image()
        self.original_size = tuple(int(s) for s in original_image_size)
        self.input_size = tuple(int(s) for s in transformed_image.shape[-2:])
        engine = self.engine
        input_image = engine.preprocess(transformed_image.to(self.device, torch.float32))
        self.features = engine.image_encoder(input_image)
        self._active = engine
        self._dense_pe = engine.prompt_encoder.get_dense_pe()
        self.is_image_set = True

    @torch.inference_mode()
    def set_embedding(self, embedding: Array, original_size: tuple[int, int],
                      input_size: tuple[int, int] | None = None) -> None:
        """Use an embedding computed earlier (:meth:`get_image_embedding` of this model) as
        the current image, without running the encoder: a server keeps embeddings per
        image and decodes every prompt through :meth:`predict` like any other caller.

        Args:
            embedding: 1×C×h×w (as :meth:`get_image_embedding`), numpy or tensor.
            original_size: (H, W) of the image it was computed from.
            input_size: (h, w) of the resized image; by default what :attr:`transform`
                gives for ``original_size``.
        Raises:
            InputError: an embedding of another shape than this model's.
        """
        expected = (1, self.model.prompt_encoder.embed_dim, *self.model.prompt_encoder.image_embedding_size)
        features = torch.as_tensor(embedding)
        if tuple(features.shape) != tuple(expected) or not features.is_floating_point():
            raise InputError(f"the embedding has shape {tuple(features.shape)}, not {expected} (this model's)",
                             "pass get_image_embedding() of the same model")
        self.reset_image()
        self.original_size = tuple(int(s) for s in original_size)
        self.input_size = (tuple(int(s) for s in input_size) if input_size is not None
                           else self.transform.get_preprocess_shape(*self.original_size, self.model.img_size))
        engine = self.engine
        self.features = features.to(self.device, torch.float32)
        self._active = engine
        self._dense_pe = engine.prompt_encoder.get_dense_pe()
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The current image embedding, 1×C×H×W with H = W = ``img_size / 16``
        (1×256×64×64 for SAM)."""
        self._require_image()
        return self.features

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features = None
        self._active = self._dense_pe = None
        self.original_size = None
        self.input_size = None
        self.orig_h = self.orig_w = self.input_h = self.input_w = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise NotReadyError("an image must be set with .set_image(...) before mask prediction",
                                "call predictor.set_image(image) first")

    # ---------------------------------------------------------------- prompts
    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt set, in original-image pixel coordinates.

        Args:
            point_coords: N×2 (x, y); point_labels: N (1 foreground, 0 background).
                Points lie on the image (0 <= x < W, 0 <= y < H).
            box: 4 (x0, y0, x1, y1), inside the image, x0 < x1 and y0 < y1. mask_input: 1×L×L low-res logits from a previous call
            (L = ``img_size / 4``: 256 for SAM's 1024² input, 64 for a 256² model).
        Returns:
            masks C×H×W (bool, or float logits with ``return_logits``), scores C,
            low-res logits C×L×L with L = ``img_size / 4`` (256 for SAM's 1024² input);
            C = 3 with ``multimask_output`` else 1.
        """
        self._require_image()
        coords_t = labels_t = box_t = mask_t = None
        if point_coords is not None:
            if point_labels is None:
                raise InputError("point_labels must be supplied with point_coords")
            coords = _as_array(point_coords, "point_coords")
            if coords.ndim == 1 and coords.shape == (2,):
                coords = coords[None]
            if coords.ndim != 2 or coords.shape[1] != 2:
                raise InputError(
                    f"point_coords must be an N×2 array of (x, y), got shape {coords.shape}",
                    "give the labels separately, in point_labels (1 foreground, 0 background)",
                )
            labels = _as_array(point_labels, "point_labels").reshape(-1)
            if len(labels) != len(coords):
                raise InputError(f"{len(coords)} points but {len(labels)} labels", "give one label per point")
            if not np.isin(labels, (0, 1)).all():
                bad = labels[~np.isin(labels, (0, 1))][0]
                raise InputError(f"point label {bad:g} is not 0 or 1", "use 1 for foreground points, 0 for background")
            check_prompt_count(len(coords))
            check_prompt_arrays(coords, None, self.original_size)
            coords_t = self._to_input_frame(coords).float()[None]
            labels_t = torch.as_tensor(labels, dtype=torch.int, device=self.device)[None]
        elif point_labels is not None:
            raise InputError("point_labels given without point_coords")
        if box is not None:
            box = _as_array(box, "box")
            if box.size != 4:
                raise InputError(f"predict takes one box of 4 numbers (x0, y0, x1, y1), got shape {box.shape}",
                                 "use predict_torch for a batch of boxes")
            check_prompt_arrays(None, box, self.original_size)
            box_t = self._to_input_frame(box.reshape(1, 4), boxes=True).float()
        if mask_input is not None:
            mask_t = torch.as_tensor(_as_array(mask_input, "mask_input"), dtype=torch.float, device=self.device)[None]
        masks, scores, low_res = self.predict_torch(
            coords_t, labels_t, box_t, mask_t, multimask_output=multimask_output, return_logits=return_logits
        )
        return masks[0].cpu().numpy(), scores[0].float().cpu().numpy(), low_res[0].float().cpu().numpy()

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prediction; prompts already in the resized frame.

        Args:
            point_coords B×N×2, point_labels B×N, boxes B×4, mask_input B×1×L×L
            (L = ``img_size / 4``, 256 for SAM).
        Returns:
            masks B×C×H×W, iou predictions B×C, low-res logits B×C×L×L.
        """
        self._require_image()
        check_prompt_count(point_coords.shape[-2] if point_coords is not None else 0,
                           len(boxes) if boxes is not None else (len(point_coords) if point_coords is not None else 0))
        points = (point_coords, point_labels) if point_coords is not None else None
        low_res, iou = self.predict_low_res(points, boxes, mask_input, multimask_output)
        return self._masks(low_res, return_logits), iou, low_res

    @torch.inference_mode()
    def predict_batch(
        self,
        point_coords: Array | None = None,
        point_labels: Array | None = None,
        boxes: Array | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`predict_torch` with the prompts in original-image pixels (the frame of the
        image given to :meth:`set_image`); see :meth:`predict_batch_low_res` for the
        arguments.

        Returns:
            masks B×C×H×W, iou predictions B×C, low-res logits B×C×L×L.
        """
        low_res, iou = self.predict_batch_low_res(point_coords, point_labels, boxes, mask_input, multimask_output)
        return self._masks(low_res, return_logits), iou, low_res

    @torch.inference_mode()
    def predict_batch_low_res(self, point_coords: Array | None = None, point_labels: Array | None = None,
                              boxes: Array | None = None, mask_input: torch.Tensor | None = None,
                              multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict_low_res` with the prompts in original-image pixels: the one place
        where batched prompts are mapped to the model's input frame.

        Args:
            point_coords: B×N×2 (x, y); point_labels: B×N (1 foreground, 0 background).
            boxes: B×4 XYXY. mask_input: B×1×L×L low-res logits.
            numpy coordinates are mapped in float64 and stay float64 (segment_anything's
            generator path); tensors are mapped in float32 (its ``apply_coords_torch``).
        Returns:
            low-res logits B×C×L×L (L = ``img_size / 4``) and IoU predictions B×C.
        """
        self._require_image()
        points = None
        if point_coords is not None:
            if point_labels is None:
                raise InputError("point_labels must be supplied with point_coords")
            labels = torch.as_tensor(point_labels, device=self.device)
            if isinstance(point_labels, np.ndarray):
                labels = labels.int()
            points = (self._to_input_frame(point_coords), labels)
        box_t = self._to_input_frame(boxes, boxes=True) if boxes is not None else None
        return self.predict_low_res(points, box_t, mask_input, multimask_output)

    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        """Low-res logits B×C×L×L of the current image → float32 logits B×C×H×W at its
        original size (the values of ``Sam.postprocess_masks``, without upsampling the
        padding; :func:`pocketsam.masks.upsample_logits`)."""
        self._require_image()
        return upsample_logits(low_res, self.input_size, self.original_size, self.model.img_size)

    def _masks(self, low_res: torch.Tensor, return_logits: bool) -> torch.Tensor:
        masks = self.upsample(low_res)
        return masks if return_logits else masks > self.model.mask_threshold

    def _to_input_frame(self, coords: Array, boxes: bool = False) -> torch.Tensor:
        """Points (…×2) or boxes (B×4) in original pixels → the resized input frame, on
        :attr:`device`: numpy in float64, tensors in float32 (as :class:`ResizeLongestSide`)."""
        if isinstance(coords, torch.Tensor):
            fn = self.transform.apply_boxes_torch if boxes else self.transform.apply_coords_torch
            return fn(coords, self.original_size).to(self.device)
        fn = self.transform.apply_boxes if boxes else self.transform.apply_coords
        return torch.as_tensor(fn(np.asarray(coords), self.original_size), device=self.device)

    @torch.inference_mode()
    def predict_low_res(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder only: low-res logits B×C×L×L (L = ``img_size / 4``) and IoU predictions
        B×C (no upsampling).

        Generators use this to filter candidates before paying for full-resolution masks.
        """
        self._require_image()
        engine = self._active
        check_prompts(points, boxes, mask_input, engine.prompt_encoder.mask_input_size)
        sparse, dense = engine.prompt_encoder(points, boxes, mask_input)
        low_res, iou = engine.mask_decoder(self.features, self._dense_pe, sparse, dense, multimask_output)
        check_finite_outputs(low_res, iou)
        return low_res, iou


def check_finite_outputs(low_res: torch.Tensor, iou: torch.Tensor) -> None:
    """NaN/inf logits or scores would silently become empty masks and unwritable scores.

    Raises:
        PocketSamError: some mask logit or predicted IoU is not finite.
    """
    if not (bool(torch.isfinite(iou).all()) and bool(torch.isfinite(low_res).all())):
        raise PocketSamError(
            "the model produced NaN or infinite mask logits or scores",
            "its weights or this speed mode overflow; try another checkpoint, or SamPredictor(..., mode='reference')",
        )


def check_image(image: np.ndarray) -> np.ndarray:
    """The one image rule of the predictor and the generators: an H×W×3 ``uint8`` array.

    Returns:
        ``image`` as a numpy array.
    Raises:
        InputError: another shape (e.g. a 2-D grayscale array) or dtype.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise InputError(
            f"expected an H×W×3 image, got an array of shape {tuple(image.shape)}",
            "convert grayscale/RGBA images to RGB first (pocketsam.io.load_image does; for a 2-D array: "
            "np.repeat(a[..., None], 3, axis=2))",
        )
    if image.dtype != np.uint8:
        raise InputError(f"expected a uint8 image, got dtype {image.dtype}", "scale pixels to 0..255 uint8")
    return image


def _as_array(value: object, name: str) -> np.ndarray:
    """``value`` as a float array, or one InputError (strings, ragged lists, None inside...)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers, got {value!r:.80}") from None


#: Point labels of SAM's prompt encoder: -1 padding, 0 background, 1 foreground, 2 / 3 the
#: top-left / bottom-right corner of a box.
POINT_LABELS = (-1, 0, 1, 2, 3)


def check_prompts(
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    mask_input_size: tuple[int, int],
) -> None:
    """The batched prompts of :meth:`SamPredictor.predict_torch` (the one check every
    prediction passes): coordinates ``B×N×2`` with labels ``B×N`` in :data:`POINT_LABELS`,
    boxes ``B×4``, mask inputs ``B×1×h×w`` (the low-res size), all finite and with one batch
    size B. Anything else would fail deep in the model, or worse, silently give NaN scores.

    Raises:
        InputError: naming what is wrong.
    """
    sizes: dict[str, int] = {}

    def real(t: object, name: str) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}", "use predict() for numpy arrays")
        if t.dtype == torch.bool or t.is_complex():
            raise InputError(f"{name} must hold real numbers, got dtype {t.dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(f"{name}: NaN or infinite values", "give finite pixel coordinates")
        return t

    if points is not None:
        if not isinstance(points, (tuple, list)) or len(points) != 2:
            raise InputError("points must be a (coords, labels) pair")
        coords, labels = real(points[0], "point coordinates"), real(points[1], "point labels")
        if coords.ndim != 3 or coords.shape[2] != 2:
            raise InputError(f"point_coords must be B×N×2, got shape {tuple(coords.shape)}",
                             "one row of N (x, y) points per prompt; labels go in point_labels")
        if tuple(labels.shape) != tuple(coords.shape[:2]):
            raise InputError(f"point_labels must be B×N = {tuple(coords.shape[:2])} to match point_coords, got "
                             f"shape {tuple(labels.shape)}", "give one label per point, in the same batch order")
        if labels.numel():
            ok = torch.zeros_like(labels, dtype=torch.bool)
            for v in POINT_LABELS:
                ok |= labels == v
            if not bool(ok.all()):
                bad = labels[~ok].flatten()[0].item()
                raise InputError(f"point label {bad:g} is not one of -1, 0, 1, 2, 3",
                                 "1 foreground, 0 background, 2/3 box corners, -1 padding")
        sizes["point_coords"] = coords.shape[0]
    if boxes is not None:
        boxes = real(boxes, "boxes")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InputError(f"boxes must be B×4 (x0, y0, x1, y1), got shape {tuple(boxes.shape)}")
        sizes["boxes"] = boxes.shape[0]
    if mask_input is not None:
        mask_input = real(mask_input, "mask_input")
        h, w = mask_input_size
        if mask_input.ndim != 4 or tuple(mask_input.shape[1:]) != (1, h, w):
            raise InputError(f"mask_input must be B×1×{h}×{w} (low-res logits of an earlier call), got shape "
                             f"{tuple(mask_input.shape)}")
        sizes["mask_input"] = mask_input.shape[0]
    if len(set(sizes.values())) > 1:
        given = ", ".join(f"{k} {v}" for k, v in sizes.items())
        raise InputError(f"the prompts have different batch sizes ({given})", "give every prompt tensor the same first dimension B")
