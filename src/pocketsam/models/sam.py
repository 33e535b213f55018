"""The ``Sam`` container: image encoder + prompt encoder + mask decoder, and the pre/post
processing that maps between image pixels and the model's square input frame."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pocketsam.models.info import ModelInfo
from pocketsam.models.mask_decoder import MaskDecoder
from pocketsam.models.prompt_encoder import PromptEncoder
from pocketsam.preprocess import PIXEL_MEAN, PIXEL_STD, normalize_pad


class Sam(nn.Module):
    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: tuple[float, ...] = PIXEL_MEAN,
        pixel_std: tuple[float, ...] = PIXEL_STD,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self.config: Any = None  # set by pocketsam.models.registry.create_model
        #: Thresholds the weights recommend for automatic mask generation (e.g.
        #: ``pred_iou_thresh`` for a model whose IoU head is calibrated lower than SAM's),
        #: read from checkpoint metadata; empty for official checkpoints.
        self.everything_defaults: dict[str, float] = {}
        #: Optional object-proposal head on the image embedding
        #: (:class:`~pocketsam.models.proposal_head.ProposalHead`); its tensors travel
        #: under ``proposal_head.`` in pocketsam checkpoints, never in official ``.pth`` files.
        self.proposal_head: nn.Module | None = None
        #: Where the model came from and how it runs (:class:`~pocketsam.models.info.ModelInfo`):
        #: filled by the loader, and by the runtime on inference copies.
        self.info: ModelInfo = ModelInfo()

    @property
    def has_proposal_head(self) -> bool:
        return self.proposal_head is not None

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise pixels and pad bottom/right to img_size²: (B, 3, h, w) → (B, 3, S, S)."""
        return normalize_pad(x, self.pixel_mean, self.pixel_std, self.img_size)

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
    ) -> torch.Tensor:
        """Low-res logits (B, M, 4H, 4W) → logits at the original image size (B, M, H0, W0).

        Upsample to the padded input frame, drop the padding, resize to the original size
        (both bilinear, as the reference).
        """
        masks = F.interpolate(masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)

    def forward(self, batched_input: list[dict[str, Any]], multimask_output: bool) -> list[dict[str, torch.Tensor]]:
        """segment_anything's batched end-to-end call (images already resized, prompts in
        the resized frame). Each input dict has ``image`` (3×h×w), ``original_size`` and
        optional ``point_coords``/``point_labels``/``boxes``/``mask_inputs``."""
        images = torch.stack([self.preprocess(x["image"][None])[0] for x in batched_input])
        embeddings = self.image_encoder(images)
        outputs = []
        for record, emb in zip(batched_input, embeddings):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            sparse, dense = self.prompt_encoder(points, record.get("boxes"), record.get("mask_inputs"))
            low_res, iou = self.mask_decoder(
                emb.unsqueeze(0), self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output
            )
            masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
            outputs.append(
                {"masks": masks > self.mask_threshold, "iou_predictions": iou, "low_res_logits": low_res}
            )
        return outputs
