"""User-facing errors.

Every problem a user can cause (a wrong file, a bad mask, an interrupted run) is raised as a
``BlendedError`` whose message names the input and the fix, so the ComfyUI node can show it
verbatim instead of a stack trace from deep inside torch.
"""


class BlendedError(ValueError):
    """A problem with what the user gave us, explained in words they can act on."""


class CheckpointError(BlendedError):
    """A model file that is missing, unreadable or of the wrong kind."""


class InputError(BlendedError):
    """An image, mask, prompt or setting that cannot be used as given."""


# A latent edit's mask comes painted (LoadImage's alpha) or found (SAM3 on a phrase); an empty one
# stops the run either way, and the fix differs.
EMPTY_MASK = ("mask is empty: nothing to edit. Paint the area to edit (white = edit; LoadImage's MASK is 1 - alpha), "
              "or, where a detector such as SAM3 made the mask, nothing matched its phrase: try other words or a "
              "lower threshold.")


def no_check() -> None:
    """Default for the ``check`` argument of long library calls: nothing to cancel. A caller (the
    ComfyUI node) passes its own, which raises when the user pressed Cancel."""
