"""The speed targets (issues 9 and 18), met or not: a table built from the benchmarks' CSVs (nothing is
timed here).

    python benchmarks/engines.py --epochs 10 && python benchmarks/sweep.py --epochs 10
    python benchmarks/presets.py
    python benchmarks/targets.py                                  # reads outputs/benchmark/*.csv
    python benchmarks/targets.py cpu/*.csv gpu/*.csv --out targets.csv

Each target names the figure (a CSV row) it is judged on and the device the figure must come from
(a CSV's ``device_cuda`` row); a target with no such figure among the CSVs is "not measured".
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

from _timing import OUT_DIR, read_csv


@dataclass(frozen=True)
class Target:
    figure: str
    row: str  # the CSV row it is judged on
    device: str | None  # "cpu" or "cuda": the figure must come from there; None: either
    goal: str
    met: callable
    epochs: int | None = 10  # the target is for this many epochs (a caveat otherwise)


GB = 1e9 / 2**20  # MiB
TARGETS = [
    Target(
        "stacked engine vs per-run engine, per model-epoch",
        "engines_ratio_single_over_stacked",
        "cpu",
        ">= 1.5x faster",
        lambda v: v >= 1.5,
        None,
    ),
    Target(
        "12-run sweep (4 x 3 seeds) end to end vs tutorial-style script",
        "sweep12_ratio_tutorial_over_fused",
        "cpu",
        ">= 8x",
        lambda v: v >= 8,
    ),
    Target(
        "default 4-run sweep end to end vs tutorial-style script",
        "sweep4_ratio_tutorial_over_fused",
        "cpu",
        ">= 6x",
        lambda v: v >= 6,
    ),
    Target(
        "peak RSS of the 12-run fused sweep", "sweep12_peak_rss_fused", "cpu", "<= 2 GB", lambda v: v <= 2 * GB, None
    ),
    Target(
        "per model-epoch, 12 models (stacked engine)",
        "engines_train_per_model_epoch_stacked",
        "cuda",
        "<= 0.03 s",
        lambda v: v <= 0.03,
        None,
    ),
    Target("whole 12-run sweep command", "sweep12_wall_fused", "cuda", "<= 15 s wall", lambda v: v <= 15),
    # issue 18: stacking beyond one process and one optimizer setting
    Target(
        "experiment=lr_sweep end to end, one group of 40 vs groups of 8",
        "lr_sweep_ratio_groups8_over_one_group",
        "cpu",
        ">= 1.3x faster",
        lambda v: v >= 1.3,
        None,
    ),
    Target(
        "hparams_search=lr_optuna end to end, batches of 4 trials stacked vs one model at a time",
        "lr_optuna_ratio_single_over_stacked",
        "cpu",
        ">= 2x faster",
        lambda v: v >= 2,
        None,
    ),
    Target(
        "default 4-run sweep, stacked groups in 2 local processes vs joblib with 2 jobs",
        "sweep4_ratio_joblib2_over_local2",
        "cpu",
        ">= 1x (stacked at least as fast)",
        lambda v: v >= 1,
    ),
    Target(
        "12-run sweep, the best other launcher/executor vs in-process stacked",
        "sweep12_ratio_fused_over_best_other",
        "cpu",
        ">= 1.2x faster",
        lambda v: v >= 1.2,
    ),
    Target(
        "lr_sweep's 40 models in one graph, per model-epoch (gpu_acceptance.py item h)",
        "gpu_lr_sweep_per_model_epoch",
        "cuda",
        "<= 0.01 s",
        lambda v: v <= 0.01,
        None,
    ),
    Target(
        "stacked engine's final test accuracy = per-run engine's",
        "engines_test_acc_max_abs_diff",
        None,
        "max abs diff <= 0.3 pp",
        lambda v: v <= 0.3,
        None,
    ),
]


def judge(target: Target, tables: dict[Path, dict[str, float]]) -> list[str]:
    """[figure, measured, target, met?, caveat, source CSV]."""
    for path, rows in tables.items():
        device = "cuda" if rows.get("device_cuda") else "cpu"
        value = rows.get(target.row, float("nan"))
        if target.device in (None, device) and value == value:
            caveat = (
                f"at {rows['epochs']:.0f} epochs; the target is for {target.epochs}"
                if (target.epochs and rows.get("epochs") != target.epochs)
                else ""
            )
            figure = f"{device.upper() if target.device else ''}: {target.figure}".lstrip(": ")
            return [figure, f"{value:.4g}", target.goal, "yes" if target.met(value) else "no", caveat, str(path)]
    where = f"no {target.device} CSV with it" if target.device else "no CSV with it"
    return [target.figure, f"not measured ({target.row}: {where})", target.goal, "-", "", ""]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csvs", nargs="*", type=Path, help="benchmark CSVs (default outputs/benchmark/*.csv)")
    p.add_argument("--out", type=Path, default=OUT_DIR / "targets.csv")
    args = p.parse_args(argv)
    paths = args.csvs or sorted(q for q in OUT_DIR.glob("*.csv") if q.resolve() != args.out.resolve())
    tables = {path: read_csv(path) for path in paths}
    rows = [judge(t, tables) for t in TARGETS]
    header = ["figure", "measured", "target", "met?", "caveat", "from"]
    print("| " + " | ".join(header[:5]) + " |\n|" + "---|" * 5)
    for row in rows:
        print("| " + " | ".join(row[:5]) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    print(f"CSV: {args.out}")


if __name__ == "__main__":
    main()
