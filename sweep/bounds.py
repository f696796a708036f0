"""Limits on a setting's value, declared beside it: ``Annotated[int, Bound(ge=1)]``.

The settings dataclasses (:mod:`sweep.config`) and the student families' options
(:mod:`sweep.models.registry`) both declare their ranges this way, so a YAML value is
checked where it is read, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """Limits on an option's value, or on every element of a list option."""

    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    odd: bool = False
    le: float | None = None
    even: bool = False

    def problem(self, value: float) -> str | None:
        """Return why ``value`` is out of range, or None when it is allowed."""
        if self.ge is not None and value < self.ge:
            return f"must be >= {self.ge:g}, got {value!r}"
        if self.gt is not None and value <= self.gt:
            return f"must be > {self.gt:g}, got {value!r}"
        if self.lt is not None and value >= self.lt:
            return f"must be < {self.lt:g}, got {value!r}"
        if self.le is not None and value > self.le:
            return f"must be <= {self.le:g}, got {value!r}"
        if self.even and value % 2 != 0:
            return f"must be even, got {value!r}"
        return f"must be odd, got {value!r}" if self.odd and value % 2 != 1 else None
