"""SAM-style training: simulated interactive prompting, focal+dice+IoU losses, and one
engine from CPU to torchrun clusters (see :mod:`pocketsam.train.engine`).

``TrainConfig`` imports no torch; ``Trainer`` (and torch) is imported on first use."""

from pocketsam.train.config import TrainConfig

__all__ = ["TrainConfig", "Trainer"]


def __getattr__(name: str):
    if name == "Trainer":
        from pocketsam.train.engine import Trainer

        return Trainer
    raise AttributeError(name)
