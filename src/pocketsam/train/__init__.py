"""SAM-style training: simulated interactive prompting, focal+dice+IoU losses, and one
engine from CPU to torchrun clusters (see :mod:`pocketsam.train.engine`)."""

from pocketsam.train.engine import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer"]
