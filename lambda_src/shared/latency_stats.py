"""Nearest-rank latency percentiles: the testers' run summaries and ``make test-load``'s merged
report (``workflow/loadtest.py`` loads this very file) use the same definition."""

import math
from typing import Dict, Iterable, Optional


def percentiles(values: Iterable[float]) -> Dict[str, Optional[float]]:
    """Nearest-rank p50/p90/p99 and max, in the unit given; None when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p90": None, "p99": None, "max": None}

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 3)

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": round(ordered[-1], 3)}
