"""One exception type for every user-facing failure.

Library code raises :class:`PocketSamError` with a message that says what was wrong and
what to do about it; the CLI prints that message on one line and exits non-zero, never a
traceback.
"""

from __future__ import annotations


class PocketSamError(Exception):
    """A problem with the user's input (file, argument, checkpoint) that they can fix.

    Args:
        what: what was wrong, e.g. ``"image 'x.png' does not exist"``.
        hint: what to do about it, e.g. ``"check the path"``. Optional.
    """

    def __init__(self, what: str, hint: str | None = None) -> None:
        self.what = what
        self.hint = hint
        super().__init__(f"{what} — {hint}" if hint else what)


class CheckpointError(PocketSamError):
    """A checkpoint could not be read or does not match any known architecture."""


class InputError(PocketSamError):
    """An image, prompt or data file given by the user is unusable."""
