"""The retry pause of the worker's loops while the database is unreachable."""

from __future__ import annotations

MAX_BACKOFF = 1.0
"""Seconds between retries while the database is unreachable, at most: work resumes within about a second
of the server accepting connections again (it was 5 s, plus the pool's 30 s wait)."""


class Backoff:
    """0.1 s, doubling up to ``MAX_BACKOFF``; ``reset()`` after a success."""

    def __init__(self, first: float = 0.1, cap: float = MAX_BACKOFF) -> None:
        self.first, self.cap = first, cap
        self.current = first

    def next(self) -> float:
        """The pause to take now; the following one doubles."""
        pause = self.current
        self.current = min(self.current * 2, self.cap)
        return pause

    def reset(self) -> None:
        self.current = self.first
