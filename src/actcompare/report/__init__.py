"""The sweep report: sweep folders on disk -> tables, statistics, figures and report.md.

Split by job: ``load`` (folders -> tidy tables, checked and de-duplicated), ``stats`` (pure
functions over DataFrames), ``figures`` (every plot, activation shapes included), ``markdown``
(report.md), ``build`` (writes it all), ``cli`` (``scripts/report.py`` / ``actcompare-report``).
Everything is read from the run folders, so a report can be rebuilt at any time, from several
sweeps at once, whichever launcher ran the jobs.
"""

from __future__ import annotations

from .build import build_report
from .load import Sweep, failed_runs, load_sweep
from .stats import compare, compare_groups, summarize

__all__ = ["Sweep", "build_report", "compare", "compare_groups", "failed_runs", "load_sweep", "summarize"]
