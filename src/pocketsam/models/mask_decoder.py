"""SAM's mask decoder: image embedding + prompt tokens → mask logits and predicted IoU."""

from __future__ import annotations

import torch
from torch import nn

from pocketsam.models.common import MLP, LayerNorm2d


def best_multimask(iou_pred: torch.Tensor) -> torch.Tensor:
    """TinySAM's single-mask rule, the one home of it: the index (B,) of the multimask output
    (1..M) with the highest predicted IoU, from ``iou_pred`` (B, 1 + M) over all outputs."""
    return iou_pred[:, 1:].argmax(dim=1) + 1


class MaskDecoder(nn.Module):
    """Predict 1 + ``num_multimask_outputs`` masks per prompt with a quality (IoU) estimate.

    Output 0 is the single-mask output (for unambiguous prompts); outputs 1..3 are the
    multimask outputs. ``multimask_only=True`` reproduces TinySAM, whose decoder was
    distilled on the three multimask outputs only: with ``multimask_output=False`` it
    returns the multimask output with the highest predicted IoU instead of output 0.
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        multimask_only: bool = False,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.multimask_only = multimask_only
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embeddings: (1 or B, C, H, W) — one image shared by all B prompts, or one each.
            image_pe: (1, C, H, W); sparse_prompt_embeddings: (B, N, C);
            dense_prompt_embeddings: (B or 1, C, H, W).
        Returns:
            masks (B, M, 4H, 4W) logits and iou_pred (B, M), M = 3 or 1.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        if multimask_output:
            return masks[:, 1:], iou_pred[:, 1:]
        if self.multimask_only:
            best = best_multimask(iou_pred)
            rows = torch.arange(masks.shape[0], device=masks.device)
            return masks[rows, best].unsqueeze(1), iou_pred[rows, best].unsqueeze(1)
        return masks[:, :1], iou_pred[:, :1]

    def transformer_inputs(
        self,
        image_embeddings: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Output tokens + prompt tokens (B, 1 + M + N, C), and image + dense prompt
        (1 or B, C, H, W): one image with the (1, C, H, W) "no mask" map of
        :class:`PromptEncoder` stays one map for all B prompts."""
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings], dim=1)
        return tokens, image_embeddings + dense_prompt_embeddings

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All 1 + num_multimask_outputs masks: (B, M+1, 4H, 4W) and IoU (B, M+1)."""
        masks, iou, _ = self.predict_masks_and_tokens(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        return masks, iou

    def predict_masks_and_tokens(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`predict_masks` plus the transformer's output tokens (B, 1 + M+1, C): the
        IoU token then the mask tokens, from which the IoU head and the hypernetworks read
        (what full-stage distillation matches between teacher and student)."""
        b = sparse_prompt_embeddings.shape[0]
        tokens, src = self.transformer_inputs(image_embeddings, sparse_prompt_embeddings, dense_prompt_embeddings)
        if src.shape[0] != b:  # one image for every prompt: a view, not B copies
            src = src.expand(b, -1, -1, -1)
        pos_src = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        _, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out), hs[:, : 1 + self.num_mask_tokens]
