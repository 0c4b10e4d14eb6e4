"""Errors raised while identifying an uploaded model (trusted side, never loads it)."""


class ModelFormatError(ValueError):
    """The upload is not an acceptable model; the message is shown to the participant."""
