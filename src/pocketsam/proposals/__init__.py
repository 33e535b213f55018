"""Object proposals for MobileSAMv2-style box prompting, in one package: every source
(:mod:`.sources`: fixed boxes, a COCO detections file, Ultralytics YOLO, any callable, and
the built-in proposal head on the image embedding SAM has already computed) and the head's
box coding (:mod:`.coding`). Training a head is :mod:`pocketsam.train.proposals`."""

from pocketsam.proposals.sources import (
    BoxesProposals,
    CocoDetections,
    CocoDetectionsProposals,
    HeadProposals,
    ProposalSource,
    YoloProposals,
    as_proposal_source,
)

__all__ = ["BoxesProposals", "CocoDetections", "CocoDetectionsProposals", "HeadProposals", "ProposalSource",
           "YoloProposals", "as_proposal_source"]
