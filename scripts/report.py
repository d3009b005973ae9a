"""Rebuild a sweep report from the files on disk: a thin wrapper of ``actcompare.report.cli``.

python scripts/report.py outputs/sweeps/2026-11-22/10-00-00
python scripts/report.py <sweep_a> <sweep_b> --out outputs/reports/merged
python scripts/report.py <sweep> --baseline tanh --all-pairs
"""

import sys

from actcompare.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
