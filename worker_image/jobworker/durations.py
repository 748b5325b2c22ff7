"""One grammar for every duration option: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``1d``, ``4w3d``."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from jobworker import errors

MAX_SECONDS = 100 * 365 * 86400
"""The longest duration accepted anywhere (100 years); beyond it timestamps overflow."""
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")


def parse_duration(value: str | float | timedelta, *, field: str = "duration") -> timedelta:
    """Parse ``value`` or raise ConfigurationError naming ``field``.

    Bare numbers are seconds, so env vars such as ``2`` keep working.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise errors.ConfigurationError(f"{field}: {value!r} must not be negative")
        return value
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif _WHOLE.match(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            raise errors.ConfigurationError(
                f"{field}: {value!r} is not a duration; use a number with a unit, such as 500ms, 30s, 5m, 1h30m or 1d"
            )
    if math.isnan(seconds):
        raise errors.ConfigurationError(f"{field}: {value!r} is not a duration")
    if seconds < 0:
        raise errors.ConfigurationError(f"{field}: {value!r} must not be negative")
    if seconds > MAX_SECONDS:
        raise errors.ConfigurationError(f"{field}: {value!r} is too long; at most {MAX_SECONDS // 86400} days")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    total = delta.total_seconds()
    if total == 0:
        return "0s"
    if total < 1:
        return f"{round(total * 1000)}ms"
    out = []
    rest = int(total)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)
