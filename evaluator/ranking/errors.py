"""Errors raised by the ranking engine."""


class RankingError(ValueError):
    """Input that cannot be ranked; the message says why in plain words.

    Raised instead of letting pandas/statsmodels tracebacks reach the platform.
    """
