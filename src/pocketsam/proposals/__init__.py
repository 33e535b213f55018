"""Built-in object discovery: a small class-agnostic proposal head on the image embedding
SAM has already computed (:class:`~pocketsam.models.proposal_head.ProposalHead`), its box
coding (:mod:`.coding`), training on a frozen SAM (:mod:`pocketsam.train.proposals`) and the proposal source
that feeds MobileSAMv2-style box prompting (:class:`.source.HeadProposals`)."""

from pocketsam.proposals.source import HeadProposals

__all__ = ["HeadProposals"]
