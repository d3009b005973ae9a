"""Rebuild a sweep report from the files on disk; several sweep folders merge into one report.

    actcompare-report outputs/sweeps/2026-11-22/10-00-00
    actcompare-report <sweep_a> <sweep_b> --out outputs/reports/merged
    actcompare-report <sweep> --baseline tanh --all-pairs --margin 0.2
    actcompare-report <sweep> --pdf                # a PDF beside every PNG figure

(In a checkout without installing: python scripts/report.py ...)

Exit codes: 0 report written (a malformed run is skipped with a one-line warning naming its file);
2 nothing could be reported (one line on stderr saying why).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actcompare-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep_dirs", nargs="+", help="sweep (or run) folders written by actcompare -m")
    parser.add_argument(
        "--out",
        help="where to write the report: a new or empty folder, or one holding an earlier "
        "report, which this one replaces (default: the sweep folder when one sweep folder is given, "
        "else outputs/reports/<date>/<time>)",
    )
    parser.add_argument(
        "--baseline",
        metavar="NAME",
        help="the activation every other one is compared with "
        "(default: the report.baseline the runs declared, else relu when present, else the sweep's first)",
    )
    parser.add_argument(
        "--all-pairs",
        action="store_true",
        help="compare every two activations at each "
        "setting (Holm-corrected together) instead of each against the baseline",
    )
    parser.add_argument(
        "--margin",
        type=float,
        metavar="POINTS",
        help="equivalence margin in accuracy points: a "
        "difference within ±POINTS counts as none (default: the report.margin the runs declared, "
        "0.3 unless set; docs/method.md)",
    )
    parser.add_argument("--pdf", action="store_true", help="also write every figure as PDF beside its PNG (slower)")
    args = parser.parse_args(argv)
    if args.margin is not None and not (math.isfinite(args.margin) and args.margin > 0):
        parser.error(f"--margin {args.margin}: use a finite number of accuracy points > 0, e.g. 0.3")
    out = args.out
    if out is None and (len(set(args.sweep_dirs)) > 1 or (Path(args.sweep_dirs[0]) / "run.json").is_file()):
        # several folders, or a run folder (a report never writes into a run's own folder)
        out = f"outputs/reports/{datetime.now():%Y-%m-%d/%H-%M-%S}"

    from ..errors import UserError
    from . import build_report

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    try:
        written = build_report(
            args.sweep_dirs,
            out,
            baseline=args.baseline,
            all_pairs=args.all_pairs,
            margin=None if args.margin is None else args.margin / 100,
            warn=warn,
            pdf=args.pdf,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; files already written are complete (each is renamed into place)", file=sys.stderr)
        return 130
    print(f"report: {written['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
