"""Whose fault a failure is: the one exception that marks a problem on our side."""

from __future__ import annotations


class PlatformProblem(RuntimeError):
    """Our side failed (disk full, sandbox broken): retried as a new attempt, never charged.

    `public` is the participant-facing part of the reason (the message may hold paths)."""

    def __init__(self, message: str, public: str = "") -> None:
        super().__init__(message)
        self.public = public or message
