"""Data engine: readers for SA-1B and COCO, the synthetic scene generator and the
training-time dataset.

Readers return :class:`~pocketsam.data.sample.Sample` objects; the torch dataset lives in
:mod:`pocketsam.data.dataset` (imported on demand, it needs torch).
"""

from pocketsam.data.coco import CocoReader, load_coco_json
from pocketsam.data.sa1b import SA1BReader, read_sa1b_json
from pocketsam.data.sample import Instance, Sample, segmentation_to_rle

__all__ = ["CocoReader", "Instance", "SA1BReader", "Sample", "load_coco_json", "read_sa1b_json", "segmentation_to_rle"]
