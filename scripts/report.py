"""Rebuild a sweep report from the files on disk; several sweep folders merge into one report.

    python scripts/report.py outputs/sweeps/2026-11-22/10-00-00
    python scripts/report.py <sweep_a> <sweep_b> --out outputs/reports/merged
"""

import argparse
import sys
from datetime import datetime

from actcompare.errors import UserError
from actcompare.report import build_report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", nargs="+", help="sweep (or run) folders written by run.py")
    parser.add_argument("--out", help="where to write the report (default: the sweep folder when "
                        "one is given, else outputs/reports/<date>/<time>)")  # fmt: skip
    args = parser.parse_args(argv)
    out = args.out
    if out is None and len(args.sweep_dirs) > 1:
        out = f"outputs/reports/{datetime.now():%Y-%m-%d/%H-%M-%S}"
    try:
        written = build_report(args.sweep_dirs, out)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {written['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
