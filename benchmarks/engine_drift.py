"""How far apart do the stacked and the per-run engine end on full MNIST, with and without a partial last batch?

    python benchmarks/engine_drift.py                      # Adam, 6 training-set sizes: ~1 min on 2 cores
    python benchmarks/engine_drift.py --optimizer sgd

For each training-set size (batch 100: sizes that leave a partial last batch of 50, and sizes that
divide evenly), relu and prelu at seeds 0 and 1 train for --epochs twice, once stacked (one program)
and once one model at a time, through ``experiment.run_group`` as a sweep does. Printed: per run, the
largest relative difference of train, validation and test loss between the two engines over the
epochs, and how many runs differ by more than 1e-4 (the figure docs/speed.md quotes).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_module

from actcompare.experiment import RunSpec, run_group
from actcompare.schema import hidden_sizes  # noqa: F401  (importing it registers config_schema)

LOSSES = ["train_loss", "val_loss", "test_loss"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--optimizer", default="adam", help="optimizer config (default adam)")
    p.add_argument("--epochs", type=int, default=2, help="epochs (default 2)")
    p.add_argument("--train", default="9800,9850,9900,9950,10000,10050", help="training-set sizes (batch 100)")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw (default: the config's data.root)")
    args = p.parse_args(argv)
    base = ["batch_size=100", "data.train_samples=12000", f"optimizer={args.optimizer}", f"epochs={args.epochs}"]
    base += ["diagnostics=false", "save_model=false", *([f"data.root={args.data_root}"] if args.data_root else [])]
    over, total = 0, 0
    with initialize_config_module("actcompare.conf", version_base="1.3", job_name="benchmark"):
        for n_train in map(int, args.train.split(",")):
            out = Path(tempfile.mkdtemp(prefix="engine_drift"))
            for engine in ("stacked", "single"):
                specs = [
                    RunSpec(
                        compose(
                            "config", [*base, f"data.val_samples={12000 - n_train}", f"activation={a}", f"seed={s}"]
                        ),
                        out / engine / f"{a}-seed{s}",
                    )
                    for s in (0, 1)
                    for a in ("relu", "prelu")
                ]
                run_group(specs, engine=engine)
            cells = []
            for run in sorted((out / "single").iterdir()):
                a, b = (pd.read_csv(out / e / run.name / "metrics.csv")[LOSSES] for e in ("single", "stacked"))
                worst = ((b - a).abs() / a.abs()).max().max()
                over, total = over + (worst > 1e-4), total + 1
                cells.append(f"{run.name} {worst:.0e}")
            print(f"train {n_train} (last batch {n_train % 100 or 100}): " + ", ".join(cells), flush=True)
    print(f"{over} of {total} runs differ by more than 1e-4 (relative, largest loss difference over the epochs)")


if __name__ == "__main__":
    main()
