"""Exports of a built model for other runtimes.

* :mod:`pocketsam.export.onnx_sam` — an encoder and a decoder ONNX with Segment Anything's
  ONNX interface (the pair the SAM web demo and annotation tools load), plus ``config.json``.
"""

from pocketsam.export.onnx_sam import SamOnnxDecoder, export_sam_onnx

__all__ = ["SamOnnxDecoder", "export_sam_onnx"]
