"""Runs the training engine on tiny generated shapes (used by tests/test_train.py, also
under torchrun). Usage: python tests/train_worker.py OUT STEPS [--resume] [--save-every N]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import tiny_config  # noqa: E402

from pocketsam.models import MODEL_CONFIGS  # noqa: E402
from pocketsam.train import TrainConfig, Trainer  # noqa: E402


class Shapes(torch.utils.data.Dataset):
    """Discs and bars on noise; item ``(index, seed)`` is deterministic."""

    def __init__(self, n: int = 24, size: int = 64, k: int = 3) -> None:
        self.n, self.s, self.k = n, size, k

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        index, seed = key
        g = np.random.default_rng([index, seed])
        s = self.s
        img = g.integers(0, 60, (s, s, 3)).astype(np.float32)
        masks = np.zeros((self.k, s, s), bool)
        yy, xx = np.mgrid[:s, :s]
        for j in range(self.k):
            cx, cy, r = g.integers(8, s - 8), g.integers(8, s - 8), g.integers(4, 14)
            m = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r if j % 2 else (abs(xx - cx) < r) & (abs(yy - cy) < r * 0.6)
            masks[j] = m
            img[m] = g.integers(80, 255, 3)
        for j in range(self.k):  # visible parts only
            masks[j] &= ~masks[j + 1 :].any(0)
        return {
            "image": torch.from_numpy(img).permute(2, 0, 1).contiguous(),
            "size": torch.tensor([s, s]),
            "masks": torch.from_numpy(masks),
            "valid": torch.from_numpy(masks.reshape(self.k, -1).any(1)),
        }


def collate(items):
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("steps", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--save-every", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    MODEL_CONFIGS["test_tiny"] = tiny_config(64)
    cfg = TrainConfig(data=[], out=a.out, arch="test_tiny", steps=a.steps, batch_size=2, warmup_steps=2,
                      log_every=1, save_every=a.save_every, val_images=2, lr=1e-3, resume=a.resume,
                      masks_per_image=8, num_workers=0)
    result = Trainer(cfg, Shapes(), collate).fit()
    if result.get("ranks_in_sync") is False:
        raise SystemExit("ranks diverged")


if __name__ == "__main__":
    main()
