"""A resumable, rank-aware stream of (index, seed) batches.

The sample at global position ``p`` is ``perm_e[p % n]`` with ``e = p // n`` and
``perm_e`` a permutation seeded by ``(seed, e)``. Micro-batch ``m`` of rank ``r`` takes
positions ``[(m·world + r)·b, … + b)``. Resuming at micro-batch ``m`` therefore replays the
exact same data, and every sample carries its own augmentation seed.
"""

from __future__ import annotations

from typing import Iterator

import torch


class ResumableBatchSampler:
    def __init__(
        self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> None:
        if num_samples < 1:
            raise ValueError("the training set is empty")
        self.n, self.b, self.seed = num_samples, batch_size, seed
        self.rank, self.world, self.start = rank, world_size, start
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        return self._perms[epoch]

    def batch(self, micro_step: int) -> list[tuple[int, int]]:
        first = (micro_step * self.world + self.rank) * self.b
        out = []
        for p in range(first, first + self.b):
            epoch, i = divmod(p, self.n)
            out.append((int(self._perm(epoch)[i]), self.seed * 7_919 + p))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        m = self.start
        while True:
            yield self.batch(m)
            m += 1
