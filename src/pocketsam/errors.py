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


class InputError(PocketSamError, ValueError):
    """An image, prompt, setting or data file given by the user is unusable. Also a
    ``ValueError``, which segment_anything raises in the same places, so that drop-in code
    catching that keeps working."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type (e.g. ``build_sam(checkpoint=123)``); also a ``TypeError``."""


class NotReadyError(PocketSamError, RuntimeError):
    """A call made before the object is ready for it (``predict`` before ``set_image``); also
    the ``RuntimeError`` segment_anything raises there."""


class CheckpointWarning(UserWarning):
    """Something in a checkpoint was ignored (the model still loads); the CLI prints it as
    one ``warning: …`` line."""
