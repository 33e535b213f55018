"""One SAM training step as an ``nn.Module`` (so DDP can wrap it): encode the images,
simulate interactive prompting for every mask, return the loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pocketsam.models.sam import Sam
from pocketsam.preprocess import normalize_batch
from pocketsam.train.losses import sam_loss
from pocketsam.train.prompts import correction_points, noisy_boxes, sample_from_regions
from pocketsam.train.validate import quick_miou


def encode_images(sam: Sam, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Image embeddings of a training batch: ``image`` (B, 3, S, S) float 0–255 padded
    bottom/right, ``size`` (B, 2) valid h, w → (B, C, S/16, S/16). The padding is 0 after
    normalisation, as at inference."""
    return sam.image_encoder(normalize_batch(image, size, sam.pixel_mean, sam.pixel_std))


class SamTrainStep(nn.Module):
    """Forward(batch, generator) → (loss, logs).

    Batch: ``image`` (B, 3, S, S) float 0–255 zero-padded bottom/right, ``size`` (B, 2)
    valid h, w, ``masks`` (B, K, S, S) bool and ``valid`` (B, K) bool.

    Args:
        rounds: prompting rounds per mask (1 = first prompt only).
        box_prob: share of masks whose first prompt is a noisy box instead of a point.
        mask_feedback_prob: probability that a later round also gets the previous
            low-res logits as mask input.
    """

    def __init__(
        self,
        sam: Sam,
        rounds: int = 3,
        box_prob: float = 0.5,
        mask_feedback_prob: float = 0.5,
        focal_weight: float = 20.0,
        dice_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight
        self.sam = sam
        self.rounds = rounds
        self.box_prob = box_prob
        self.mask_feedback_prob = mask_feedback_prob

    def encode(self, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return encode_images(self.sam, image, size)

    def evaluate(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return quick_miou(self.sam, self, batch)

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None):
        sam = self.sam
        emb = self.encode(batch["image"], batch["size"])
        img_idx, mask_idx = batch["valid"].nonzero(as_tuple=True)
        gt = batch["masks"][img_idx, mask_idx]  # (N, S, S) bool
        low = sam.prompt_encoder.mask_input_size
        # Losses compare logits upsampled to the input frame with the exact masks (as SAM):
        # an area-downsampled target would erase objects smaller than one low-res cell.
        target = gt.float()  # (N, S, S)
        low_target = F.interpolate(target[:, None], size=low, mode="area")[:, 0] > 0.5  # for correction clicks
        scale = gt.shape[-1] / low[-1]
        pe = sam.prompt_encoder.get_dense_pe()
        n = gt.shape[0]
        use_box = torch.rand(n, generator=generator, device=gt.device) < self.box_prob

        total, logs, count = 0.0, {"mask": 0.0, "iou_mse": 0.0, "iou": 0.0}, 0
        for group in (use_box.nonzero().squeeze(1), (~use_box).nonzero().squeeze(1)):
            if group.numel() == 0:
                continue
            is_box = bool(use_box[group[0]])
            g_gt, g_target, g_emb = gt[group], target[group], emb[img_idx[group]]
            g_low = low_target[group]
            boxes = noisy_boxes(g_gt, generator) if is_box else None
            coords = labels = None
            if not is_box:
                xy, _ = sample_from_regions(g_gt, generator)
                coords, labels = xy[:, None], torch.ones(len(group), 1, dtype=torch.long, device=gt.device)
            mask_input = None
            for r in range(self.rounds):
                points = (coords, labels) if coords is not None else None
                sparse, dense = sam.prompt_encoder(points, boxes, mask_input)
                logits, iou = sam.mask_decoder.predict_masks(g_emb, pe, sparse, dense)
                multimask = r == 0 and not is_box  # a single click is ambiguous
                sel = slice(1, None) if multimask else slice(0, 1)
                full = F.interpolate(logits[:, sel].float(), size=g_target.shape[-2:], mode="bilinear", align_corners=False)
                loss, parts = sam_loss(
                    full, iou[:, sel].float(), g_target,
                    focal_weight=self.focal_weight, dice_weight=self.dice_weight,
                )
                total = total + loss * len(group)
                for key in logs:
                    logs[key] += float(parts[key]) * len(group)
                count += len(group)
                if r + 1 == self.rounds:
                    break
                chosen = logits[:, sel][torch.arange(len(group)), parts["best"]].detach()
                xy, lab = correction_points(chosen > 0, g_low, generator, scale)
                coords = xy if coords is None else torch.cat([coords, xy], 1)
                labels = lab if labels is None else torch.cat([labels, lab], 1)
                feed = torch.rand((), generator=generator, device=gt.device) < self.mask_feedback_prob
                mask_input = chosen[:, None].float() if feed else None
        if count == 0:  # no masks in this batch: keep the graph valid for DDP
            return emb.sum() * 0.0, {"mask": 0.0, "iou_mse": 0.0, "iou": 0.0, "masks": 0}
        logs = {k: v / count for k, v in logs.items()}
        logs["masks"] = n
        return total / count, logs
