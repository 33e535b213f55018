"""The proposal head as a proposal source of :class:`~pocketsam.everything.ObjectAwareMaskGenerator`.

Unlike an external detector it reads the image embedding the predictor has already
computed, so it is asked through :meth:`HeadProposals.from_predictor` after
``set_image``, not with the image.
"""

from __future__ import annotations

import numpy as np
import torch

from pocketsam.proposals.coding import decode_boxes


class HeadProposals:
    """Boxes from ``sam.proposal_head`` in original-image pixels.

    Args:
        head: a :class:`~pocketsam.models.proposal_head.ProposalHead`.
        top_k: the most proposals per image (before score filtering and NMS).
        min_score: the lowest centre score kept.
    """

    uses_embedding = True
    description = "the checkpoint's proposal head"

    def __init__(self, head: torch.nn.Module, top_k: int = 100, min_score: float = 0.05) -> None:
        self.head, self.top_k, self.min_score = head, top_k, min_score

    @property
    def score_thresh(self) -> float:
        """The score threshold the head was trained for (its recommendation to the generator),
        rounded to 4 decimals: it is stored in the head's dtype, e.g. fp16 on disk."""
        return round(float(self.head.score_thresh), 4)

    @torch.inference_mode()
    def from_predictor(self, predictor) -> tuple[np.ndarray, np.ndarray]:
        emb = predictor.get_image_embedding()
        head = self.head.to(emb.device).eval()
        out = head(emb.float())
        stride = predictor.model.img_size / out.shape[-1]
        boxes, scores = decode_boxes(out, stride, self.top_k, self.min_score)[0]
        boxes = predictor.pre.boxes_to_image(boxes, predictor.original_size)  # input frame → image pixels
        return boxes.cpu().double().numpy(), scores.cpu().double().numpy()

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise TypeError("HeadProposals reads the embedding: use it through ObjectAwareMaskGenerator")
