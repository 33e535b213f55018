"""Distillation: make small SAMs from a big one, as MobileSAM and TinySAM were made.

* Stage ``encoder`` — MobileSAM's *decoupled distillation*: the student's image encoder
  regresses the teacher's image embeddings, computed once into an on-disk cache
  (:mod:`pocketsam.embedding_cache`); the teacher's prompt encoder and mask decoder are
  reused unchanged.
* Stage ``full`` — TinySAM's *full-stage distillation*: embedding + decoder output-token
  + mask-logit losses (:mod:`pocketsam.distill.losses`), with *online hard prompt
  sampling* and *hard mask weighting* (:mod:`pocketsam.distill.step`); the decoder
  stays the teacher's unless ``train_decoder``.

Both are steps of the one training engine (:class:`pocketsam.train.Trainer`): CPU to
torchrun DDP, exact resume, metrics, validation and official-layout export come with it.
``pocketsam distill cache`` / ``pocketsam distill train`` are the command line.
"""

from pocketsam.distill.run import DistillConfig, distill, load_teacher
from pocketsam.distill.step import EncoderDistillStep, FullDistillStep, LossWeights
from pocketsam.embedding_cache import CacheTransform, TeacherCache
from pocketsam.train.embeddings import fill_cache, open_cache

__all__ = [
    "CacheTransform", "DistillConfig", "EncoderDistillStep", "FullDistillStep", "LossWeights", "TeacherCache",
    "distill", "fill_cache", "load_teacher", "open_cache",
]
