"""Errors raised by the scoring engine."""


class ScoringError(ValueError):
    """Invalid input to the scorer (the message names the case)."""
