"""The one natural sort of the project: numbers by value, text with its digit runs as numbers.

Every place that orders labels (swept values, seeds, run names, groups) uses ``natural_key`` from
here, so a table, a figure and a verdict list the same labels in the same order. No pandas at import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_DIGITS = re.compile(r"(\d+)")


def natural_key(value: Any) -> tuple:
    """Sort key: numbers by value ("0.001" < "2" < "16"; 2 and "2" alike), text with its digit runs
    compared as numbers ("[64, 64]" < "[128]" < "[256, 64]"; "layer 2" < "layer 10"); numbers first."""
    text = str(value)
    try:
        return (0, float(text), ())
    except ValueError:
        pass
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in _DIGITS.split(text) if p)
    return (1, 0.0, parts)


def natural_sorted(values: Iterable[Any]) -> list:
    """The distinct ``values`` in natural order (the first of equal ones kept)."""
    return sorted(dict.fromkeys(values), key=natural_key)


def natural_rank(col: Any) -> Any:
    """A pandas sort key (``sort_values(key=natural_rank)``): each value's rank in natural order."""
    rank = {v: i for i, v in enumerate(sorted(set(col), key=natural_key))}
    return col.map(rank)
