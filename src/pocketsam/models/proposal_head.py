"""A class-agnostic object-proposal head on SAM's image embedding (pocketsam's built-in
object discovery for MobileSAMv2-style "segment everything").

CenterNet-style: the (B, C, g, g) embedding the encoder has already produced is
upsampled ``2**upsample`` times and mapped to, per output cell, an object-centre logit,
the box size (log width and height in cells) and the centre's sub-cell offset. No second
backbone runs: discovery costs one small convolutional head.
"""

from __future__ import annotations

import torch
from torch import nn

from pocketsam.thresholds import MOBILESAMV2_SCORE_THRESH


class ProposalHead(nn.Module):
    """(B, C, g, g) image embedding → (B, 5, g·2^u, g·2^u): channel 0 the centre logit,
    1–2 log(w, h / stride), 3–4 the centre offset (x, y) in cells.

    Args:
        in_dim: the embedding's channels (256 for every SAM).
        hidden: the head's width.
        upsample: u, the number of 2× upsamplings (2: stride 4 px at a 16-px grid cell).
    """

    def __init__(self, in_dim: int = 256, hidden: int = 64, upsample: int = 2,
                 score_thresh: float = MOBILESAMV2_SCORE_THRESH) -> None:
        super().__init__()
        self.upsample = upsample
        #: the centre score from which a proposal is worth decoding (chosen when the head
        #: is trained; travels with its weights)
        self.register_buffer("score_thresh", torch.tensor(float(score_thresh)))
        layers: list[nn.Module] = [nn.Conv2d(in_dim, hidden, 3, padding=1), nn.GELU()]
        for _ in range(upsample):
            layers += [nn.ConvTranspose2d(hidden, hidden, 2, stride=2), nn.GELU()]
        layers += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(hidden, 5, 1)
        nn.init.constant_(self.out.bias[:1], -4.0)  # rare centres: start near p = 0.02

    @property
    def config(self) -> dict[str, int]:
        return {"in_dim": self.body[0].in_channels, "hidden": self.out.in_channels, "upsample": self.upsample}

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(embedding))

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor]) -> "ProposalHead":
        """Rebuild the head from its own tensors (keys without a prefix)."""
        convs = sorted(int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.endswith(".weight"))
        upsample = sum(1 for i in convs if sd[f"body.{i}.weight"].shape[-1] == 2)
        head = cls(sd["body.0.weight"].shape[1], sd["out.weight"].shape[1], upsample)
        head.load_state_dict({**head.state_dict(), **sd})  # heads saved before score_thresh existed: 0.4
        return head
