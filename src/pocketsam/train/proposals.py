"""Training the proposal head on a frozen SAM: ``pocketsam train-proposals``.

The SAM model's own image embeddings are computed once into the distillation cache
(:mod:`pocketsam.embedding_cache`, with the model as its own "teacher"), so training never
runs the image encoder; the head learns CenterNet targets from the ground-truth boxes of
SA-1B / synthetic folders. It is another step of the one training engine: resumable,
with progress, metrics, validation and export (the exported checkpoint carries the head
under ``proposal_head.``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from pocketsam.errors import InputError
from pocketsam.masks import box_iou
from pocketsam.models.proposal_head import ProposalHead
from pocketsam.preprocess import ResizeLongestSide
from pocketsam.proposals.coding import decode_boxes, encode_targets, head_loss
from pocketsam.train.embeddings import cached_embeddings, collect_images, default_device, load_frozen
from pocketsam.train.engine import Trainer


@dataclass
class ProposalConfig:
    """The head's shape and the cache, beside the engine's :class:`TrainConfig`."""

    hidden: int = 64
    upsample: int = 2
    cache: str | None = None  # default OUT/embedding_cache
    flip: bool = True
    #: recorded in the head as its recommended proposal score threshold: 0.1 gave the
    #: bundled model's head its best AR@100 on held-out scenes (README, Object discovery)
    score_thresh: float = 0.1


class EmbeddingBoxes(Dataset):
    """Item ``(index, seed)``: the model's cached embedding of an image (flipped at random
    when the cache allows) and the image's ground-truth boxes in the input frame, straight
    from the annotation file: no image or mask is decoded.

    Keys: ``teacher_embedding`` (C, g, g), ``boxes`` (K, 4) XYXY inclusive pixels,
    ``size`` (2,) the image's extent in the input frame. Batch with :func:`boxes_collate`.
    """

    def __init__(self, images: Sequence[Any], cache, img_size: int, flip: bool = True, seed: int = 0) -> None:
        self.images, self.cache, self.img_size = list(images), cache, img_size
        self.flip, self.seed = flip and cache.transform.views >= 2, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key) -> dict[str, Any]:
        index, seed = key
        im = self.images[index]
        s = im.sample
        h, w = ResizeLongestSide.get_preprocess_shape(s.height, s.width, self.img_size)
        sx, sy = w / s.width, h / s.height
        xywh = np.array([i.bbox for i in s.instances if not i.iscrowd and i.area > 0], dtype=np.float64).reshape(-1, 4)
        boxes = np.stack([xywh[:, 0] * sx, xywh[:, 1] * sy, (xywh[:, 0] + xywh[:, 2]) * sx - 1,
                          (xywh[:, 1] + xywh[:, 3]) * sy - 1], 1)
        flipped = self.flip and bool(np.random.default_rng([self.seed, seed, index]).random() < 0.5)
        if flipped:
            boxes[:, [0, 2]] = (w - 1) - boxes[:, [2, 0]]
        emb = self.cache.get(im.sha256, int(flipped))  # view 1: the left-right mirror
        return {
            "teacher_embedding": torch.from_numpy(np.array(emb, dtype=np.float32)),
            "boxes": torch.from_numpy(boxes).float(),
            "size": torch.tensor([h, w]),
        }


def boxes_collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    k = max((len(it["boxes"]) for it in items), default=0)
    boxes = torch.zeros(len(items), k, 4)
    valid = torch.zeros(len(items), k, dtype=torch.bool)
    for i, it in enumerate(items):
        boxes[i, : len(it["boxes"])] = it["boxes"]
        valid[i, : len(it["boxes"])] = True
    return {
        "teacher_embedding": torch.stack([it["teacher_embedding"] for it in items]),
        "boxes": boxes, "valid": valid, "size": torch.stack([it["size"] for it in items]),
    }


class ProposalTrainStep(nn.Module):
    """Batch as :func:`boxes_collate` gives it: the cached ``teacher_embedding`` (the
    model's own) and the ground-truth ``boxes``/``valid``."""

    def __init__(self, sam) -> None:
        super().__init__()
        self.sam = sam

    def _outputs(self, batch):
        out = self.sam.proposal_head(batch["teacher_embedding"])
        return out, self.sam.img_size / out.shape[-1]

    def forward(self, batch, generator=None):
        out, stride = self._outputs(batch)
        targets = encode_targets(batch["boxes"], batch["valid"], out.shape[-1], stride)
        return head_loss(out, targets)

    @torch.no_grad()
    def evaluate(self, batch) -> dict[str, float]:
        """Proposal recall at box IoU 0.5 and 0.75 (≤ 100 proposals per image)."""
        out, stride = self._outputs(batch)
        found = {0.5: 0, 0.75: 0}
        total = proposals = 0
        for i, (boxes, _) in enumerate(decode_boxes(out, stride)):
            gt = batch["boxes"][i][batch["valid"][i]].float()
            gt = torch.cat([gt[:, :2], gt[:, 2:] + 1], 1)  # inclusive edges → continuous
            total += len(gt)
            proposals += len(boxes)
            if len(gt) and len(boxes):
                best = box_iou(gt, boxes).amax(1)
                for t in found:
                    found[t] += int((best >= t).sum())
        n = max(total, 1)
        return {"val_recall50": found[0.5] / n, "val_recall75": found[0.75] / n,
                "val_proposals_per_image": proposals / max(1, len(out))}


def train_proposals(train, cfg: ProposalConfig, progress: bool = True) -> dict:
    """Train a proposal head for the SAM checkpoint ``train.init`` (kept frozen)."""
    from pathlib import Path


    train.freeze = ["image_encoder", "prompt_encoder", "mask_decoder"]
    train.validate()
    sam = load_frozen(train.init, default_device(train))
    labeled = [im for im in collect_images(train.data) if im.labeled]
    if not labeled:
        raise InputError(
            "the proposal head learns from ground-truth boxes, and these folders have no SA-1B annotations",
            "give SA-1B-layout folders (image + .json), e.g. from `pocketsam data synth`",
        )
    root = Path(cfg.cache) if cfg.cache else Path(train.out) / "embedding_cache"
    cache = cached_embeddings(sam, labeled, root, 2 if cfg.flip else 1, progress)  # only what the head trains on
    dataset = EmbeddingBoxes(labeled, cache, train.input_size(), flip=cfg.flip, seed=train.seed)

    def make_step(model):
        model.everything_defaults = dict(sam.everything_defaults)  # SAM is frozen: its recommendations stay true
        torch.manual_seed(train.seed)
        model.proposal_head = ProposalHead(
            model.mask_decoder.transformer_dim, cfg.hidden, cfg.upsample, cfg.score_thresh
        ).to(model.device)
        return ProposalTrainStep(model)

    settings = {"hidden": cfg.hidden, "upsample": cfg.upsample, "flip": cfg.flip, "score_thresh": cfg.score_thresh}
    return Trainer(train, dataset, boxes_collate, step_factory=make_step, settings=settings).fit()
