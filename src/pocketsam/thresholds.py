"""Names of the "segment everything" thresholds a checkpoint may recommend. Free of torch,
so that the command line can build its parsers without importing it (``pocketsam --help``
stays instant); :mod:`pocketsam.checkpoints` validates the values."""

EVERYTHING_KEYS = ("pred_iou_thresh", "stability_score_thresh", "high_score_thresh")
