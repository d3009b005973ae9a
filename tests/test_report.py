"""The sweep report on synthetic run folders (run.json + metrics.csv written directly, no training):
tables, statistics, de-duplication, grouping by identity, checks of the files, and scripts/report.py."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from actcompare.errors import UserError
from actcompare.files import atomic_path, atomic_write
from actcompare.report import build_report, failed_runs, load_sweep, summarize

from .conftest import REPO, subprocess_env, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("train_loss.png", "test_loss.png", "test_accuracy.png")
# Final test accuracies per activation and seed: relu beats sigmoid by ~0.3 points in every seed.
ACCS = {
    "relu": {0: 0.979, 1: 0.981, 2: 0.977},
    "tanh": {0: 0.978, 1: 0.982, 2: 0.976},
    "sigmoid": {0: 0.9755, 1: 0.978, 2: 0.974},
}


def write_sweep(root: Path, accs: dict = ACCS, **config) -> Path:
    for act, seeds in accs.items():
        for seed, acc in seeds.items():
            write_run(root / f"activation={act},seed={seed}", act, seed, (acc - 0.02, acc - 0.005, acc), **config)
    return root


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """relu, tanh, sigmoid x seeds 0-2 (3 epochs), plus a failed, an interrupted and a running run."""
    root = write_sweep(tmp_path_factory.mktemp("sweep"))
    write_run(root / "activation=relu,seed=3", "relu", 3, (), status="failed", epochs=3)
    write_run(root / "activation=tanh,seed=3", "tanh", 3, (0.9,), status="interrupted", epochs=3)
    write_run(root / "activation=sigmoid,seed=3", "sigmoid", 3, (0.9,), status="running", epochs=3)
    return root


@pytest.fixture(scope="module")
def report(sweep_dir: Path) -> dict[str, Path]:
    return build_report([sweep_dir])


# ---------------------------------------------------------------- files and tables


def test_files_are_written(report: dict[str, Path], sweep_dir: Path) -> None:
    for name in ("results.csv", "runs.csv", "summary.csv", "comparisons.csv", "report.md", *PLOTS):
        path = sweep_dir / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert report["report"] == sweep_dir / "report.md"
    for name, path in report.items():
        assert path.exists(), name
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC, name
            assert not path.with_suffix(".pdf").exists(), f"{name}: a PDF without report.pdf"
    assert not list(sweep_dir.glob(".*.tmp")), "temporary files left behind"


def test_summary_statistics(report, sweep_dir: Path) -> None:
    summary = pd.read_csv(sweep_dir / "summary.csv", index_col=0)
    for col in (
        "final_test_acc_mean",
        "final_test_acc_std",
        "final_test_acc_ci95_low",
        "final_test_acc_ci95_high",
        "diff",
        "diff_ci_low",
        "diff_ci_high",
        "verdict",
        "p_diff",
        "p_diff_holm",
        "p_equiv_holm",
        "n_pairs",
        "p_best",
        "baseline",
    ):
        assert col in summary.columns, col
    by = summary.set_index("activation")
    for act, seeds in ACCS.items():
        s = pd.Series(seeds)
        row = by.loc[act]
        assert row["runs"] == 4 and row["completed"] == 3
        assert row["final_test_acc_mean"] == pytest.approx(s.mean())
        assert row["final_test_acc_std"] == pytest.approx(s.std(ddof=1), abs=1e-12)
        half = stats.t.ppf(0.975, 2) * s.std(ddof=1) / math.sqrt(3)
        assert row["final_test_acc_ci95_low"] == pytest.approx(s.mean() - half, abs=1e-9)
    # The failed count is failed runs only; interrupted and running runs are counted apart.
    assert by.loc["relu", "failed"] == 1 and by.loc["tanh", "failed"] == 0 and by.loc["sigmoid", "failed"] == 0
    assert by.loc["tanh", "interrupted"] == 1 and by.loc["sigmoid", "interrupted"] == 1
    # Against the declared baseline (relu, present), paired by seed; 3 pairs cannot decide anything.
    assert (by["baseline"] == "relu").all()
    sig = by.loc["sigmoid"]
    assert sig["n_pairs"] == 3 and sig["verdict"] == "undecided"
    ref = stats.ttest_rel([ACCS["sigmoid"][s] for s in range(3)], [ACCS["relu"][s] for s in range(3)])
    assert sig["p_diff"] >= ref.pvalue and sig["p_diff"] >= 0.25  # never below the sign-flip floor 2**(1-3)
    assert sig["diff"] == pytest.approx(np.mean([ACCS["sigmoid"][s] - ACCS["relu"][s] for s in range(3)]))
    assert (sig["diff_ci_low"], sig["diff_ci_high"]) == pytest.approx(ref.confidence_interval(0.95))
    assert pd.isna(by.loc["relu", "p_diff"])


def test_report_md_sentences(report, sweep_dir: Path) -> None:
    text = (sweep_dir / "report.md").read_text()
    for plot in PLOTS:
        assert f"]({plot})" in text, plot
    assert "baseline **relu**" in text
    assert "**sigmoid vs relu: undecided**" in text and "paired over 3 seeds" in text
    assert "## Setup" in text and "| epochs |" in text and "## What this does not show" in text
    assert "'seed=range(0," in text  # the command that would settle it
    assert "**failed**" in text and "boom" in text and "**interrupted**" in text and "**running**" in text
    # these runs recorded no validation split: the report says so and selects nothing on the test set
    assert "No validation split (data.val_samples unset)" in text and "epochs to 97 % (test)" in text
    assert "test acc at best-val epoch" not in text


def test_failed_runs_lists_failed_interrupted_and_running(sweep_dir: Path) -> None:
    found = dict(failed_runs([sweep_dir]))
    assert found == {
        "activation=relu,seed=3": "boom",
        "activation=tanh,seed=3": "interrupted",
        "activation=sigmoid,seed=3": "running",
    }


def test_no_runs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no runs"):
        build_report([tmp_path])
    with pytest.raises(UserError, match="does not exist"):
        build_report([tmp_path / "missing"])
    assert build_report([tmp_path], missing_ok=True) == {}
    assert failed_runs([tmp_path / "missing"]) == []


# ---------------------------------------------------------------- pairing, baseline, single seed


def test_missing_seed_is_dropped_from_the_pairs_and_named(tmp_path: Path) -> None:
    accs = {"relu": ACCS["relu"], "sigmoid": {0: 0.9755, 1: 0.978}}
    sweep = load_sweep([write_sweep(tmp_path, accs)])
    row = summarize(sweep).set_index("activation").loc["sigmoid"]
    assert row["n_pairs"] == 2 and row["seeds_dropped"] == "baseline: 2"
    assert row["diff"] == pytest.approx(np.mean([0.9755 - ACCS["relu"][0], 0.978 - ACCS["relu"][1]]))
    from actcompare.report.markdown import findings

    summary = summarize(sweep)
    text = "\n".join(findings(summary, summary.attrs["comparisons"], "relu"))
    assert "left out of the pairs: only relu has seed(s) 2" in text


def test_single_seed_says_no_test_is_possible(tmp_path: Path) -> None:
    accs = {a: {0: v[0]} for a, v in ACCS.items()}
    build_report([write_sweep(tmp_path, accs)], out=tmp_path / "r")
    text = (tmp_path / "r" / "report.md").read_text()
    assert "no test is possible" in text and "p = nan" not in text.lower()
    summary = pd.read_csv(tmp_path / "r" / "summary.csv").set_index("activation")
    assert (summary.loc[["tanh", "sigmoid"], "verdict"] == "undecided").all()
    assert "No comparison has two paired seeds" in text


def test_baseline_option_and_all_pairs(tmp_path: Path) -> None:
    sweep = load_sweep([write_sweep(tmp_path)])
    summary = summarize(sweep, baseline="tanh")
    assert summary.attrs["baseline"] == "tanh" and (summary["baseline"] == "tanh").all()
    assert len(summary.attrs["comparisons"]) == 2
    pairs = summarize(sweep, all_pairs=True).attrs["comparisons"]
    assert len(pairs) == 3  # relu-tanh, relu-sigmoid, tanh-sigmoid: one Holm family of 3
    from statsmodels.stats.multitest import multipletests

    both = np.concatenate([pairs["p_diff"], pairs["p_equiv"]])  # one Holm family: 3 differences + 3 TOSTs
    assert np.concatenate([pairs["p_diff_holm"], pairs["p_equiv_holm"]]) == pytest.approx(
        multipletests(both, method="holm")[1]
    )
    with pytest.raises(UserError, match="--baseline gelu"):
        summarize(sweep, baseline="gelu")
    no_relu = load_sweep([write_sweep(tmp_path / "b", {"tanh": ACCS["tanh"], "sigmoid": ACCS["sigmoid"]})])
    assert summarize(no_relu).attrs["baseline"] in ("tanh", "sigmoid")


# ---------------------------------------------------------------- identity, de-duplication, labels


def test_same_sweep_twice_counts_once(sweep_dir: Path, tmp_path: Path) -> None:
    sweep = load_sweep([sweep_dir, sweep_dir])
    assert len(sweep.runs) == 12 and sweep.repeated_folders == 12
    copy = tmp_path / "copy"
    shutil.copytree(sweep_dir / "activation=relu,seed=0", copy / "activation=relu,seed=0,again")
    sweep = load_sweep([sweep_dir, copy])  # a re-run of the same config under another folder name
    assert len(sweep.runs) == 12 and len(sweep.duplicates) == 1
    summary = summarize(sweep).set_index("activation")
    assert summary.loc["relu", "completed"] == 3
    from actcompare.report.markdown import render

    text = render(sweep, [str(sweep_dir), str(copy)], summarize(sweep), None, [])
    assert "De-duplicated: 1 run(s)" in text


def test_duplicate_prefers_the_completed_record(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "relu", 0, (0.5,), status="interrupted")
    write_run(tmp_path / "b", "relu", 0, (0.5,), status="completed")
    sweep = load_sweep([tmp_path])
    assert sweep.runs["run"].tolist() == ["b"] and sweep.duplicates == [("a", "b")]
    assert failed_runs([tmp_path]) == []  # the interrupted run was redone


def test_groups_follow_identity_not_overrides(tmp_path: Path) -> None:
    """Two sweeps whose epochs differ (an override in neither) are two groups, not one."""
    a = write_sweep(tmp_path / "ten", {"relu": ACCS["relu"]})
    b = tmp_path / "five"
    for seed, acc in ACCS["relu"].items():
        five = (acc - 0.01, acc - 0.004, acc - 0.002, acc - 0.001, acc)
        write_run(
            b / f"activation=relu,seed={seed}",
            "relu",
            seed,
            five,
            optimizer={"_target_": "torch.optim.Adam", "lr": 0.01},
        )
    sweep = load_sweep([a, b])
    assert sweep.group_cols == ["activation", "epochs", "optimizer.lr"]
    summary = summarize(sweep)
    assert len(summary) == 2 and (summary["completed"] == 3).all()
    assert set(summary.index) == {"relu, epochs=3, optimizer.lr=0.001", "relu, epochs=5, optimizer.lr=0.01"}


def test_a_name_shared_by_two_activation_configs_is_an_error(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "relu", 0)
    write_run(tmp_path / "b", "relu", 1, module="torch.nn.GELU")
    with pytest.raises(UserError, match="activation name 'relu' is shared") as err:
        load_sweep([tmp_path])
    assert "torch.nn.ReLU" in str(err.value) and "torch.nn.GELU" in str(err.value)
    assert "(in a)" in str(err.value) and "(in b)" in str(err.value)


# ---------------------------------------------------------------- files checked before trusted


def test_exploded_loss_is_diverged_and_not_averaged(tmp_path: Path) -> None:
    write_sweep(tmp_path, {"relu": ACCS["relu"]})
    write_run(tmp_path / "sgd", "tanh", 0, (0.3, 0.4, 0.45), train_loss=(2.0, 1e7, 3e7))
    write_run(tmp_path / "nan", "sigmoid", 0, (0.3,), status="diverged", train_loss=(float("nan"),))
    sweep = load_sweep([tmp_path])
    runs = sweep.runs.set_index("run")
    assert runs.loc["sgd", "outcome"] == "diverged" and runs.loc["sgd", "diverged_epoch"] == 2
    assert "exceeds" in runs.loc["sgd", "note"]
    summary = summarize(sweep).set_index("activation")
    assert summary.loc["tanh", "diverged"] == 1 and summary.loc["tanh", "completed"] == 0
    assert math.isnan(summary.loc["tanh", "final_test_acc_mean"])


def test_metrics_that_disagree_with_run_json_are_excluded(tmp_path: Path) -> None:
    write_sweep(tmp_path, {"relu": ACCS["relu"]})
    cut = tmp_path / "activation=relu,seed=1" / "metrics.csv"
    cut.write_text(cut.read_text()[:-6])  # cut mid-line
    short = tmp_path / "activation=relu,seed=2" / "metrics.csv"
    short.write_text("".join(short.read_text().splitlines(keepends=True)[:-1]))  # one epoch fewer
    sweep = load_sweep([tmp_path])
    runs = sweep.runs.set_index("run")
    assert runs.loc["activation=relu,seed=1", "outcome"] == "excluded"
    assert "mid-line" in runs.loc["activation=relu,seed=1", "note"]
    assert runs.loc["activation=relu,seed=2", "outcome"] == "excluded"
    assert "2 epoch row(s), run.json says 3" in runs.loc["activation=relu,seed=2", "note"]
    summary = summarize(sweep).set_index("activation")
    assert summary.loc["relu", "completed"] == 1 and summary.loc["relu", "excluded"] == 2
    assert summary.loc["relu", "final_test_acc_mean"] == pytest.approx(ACCS["relu"][0])


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/report.py", *args],
        cwd=REPO,
        env=subprocess_env(None),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # scripts/report.py in subprocesses
def test_malformed_files_give_one_line_naming_the_file(tmp_path: Path) -> None:
    """Through scripts/report.py: each bad run is skipped with one warning line naming its file; the
    others are reported. A column missing in every run leaves nothing to report: exit 2, one line."""
    root = write_sweep(tmp_path / "sweep", {"relu": ACCS["relu"]})
    bad = {
        "truncated": lambda d: (d / "run.json").write_text((d / "run.json").read_text()[:40]),
        "list": lambda d: (d / "run.json").write_text("[]"),
        "text": lambda d: (d / "metrics.csv").write_text((d / "metrics.csv").read_text().replace("0.5\n", "abc\n", 1)),
    }
    for i, (name, damage) in enumerate(bad.items()):
        damage(write_run(root / name, "tanh", i))
    every = tmp_path / "every"
    for seed in (0, 1):
        f = write_run(every / f"s{seed}", "relu", seed) / "metrics.csv"
        f.write_text(f.read_text().replace("test_acc,", "accuracy,"))
    res = _script(str(root), "--out", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr and len(lines) == 3, res.stderr
    for name, line in zip(sorted(bad), sorted(lines), strict=True):
        assert line.startswith("warning: ") and str(root / name) in line, line
    assert "not valid JSON" in res.stderr and "holds a JSON list" in res.stderr and "non-number ('abc')" in res.stderr
    assert pd.read_csv(tmp_path / "r" / "summary.csv")["completed"].sum() == 3
    assert "Skipped (malformed files)" in (tmp_path / "r" / "report.md").read_text()
    res = _script(str(every))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")
    assert "metrics.csv: has no column test_acc" in res.stderr and str(every / "s0") in res.stderr


def test_malformed_files_in_a_sweep_raise_user_error(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text("{")
    with pytest.raises(UserError, match=r"run\.json: is not valid JSON") as err:
        build_report([tmp_path], missing_ok=True)
    assert "\n" not in str(err.value)
    assert failed_runs([tmp_path]) == [
        (
            "r",
            f"{tmp_path.resolve() / 'r' / 'run.json'}: is not valid JSON "
            "(truncated?): Expecting property name enclosed in double quotes at "
            "line 1",
        )
    ]


# ---------------------------------------------------------------- validation split


def test_selection_on_validation(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_run(tmp_path / f"s{seed}", "relu", seed, test_acc=(0.95, 0.975, 0.972), val_acc=(0.96, 0.965, 0.98))
    sweep = load_sweep([tmp_path])
    assert sweep.selected_on == "val"
    runs = sweep.runs
    assert (runs["best_epoch"] == 3).all()  # best on validation, although test peaks at epoch 2
    assert runs["selected_test_acc"].tolist() == pytest.approx([0.972, 0.972])
    assert (runs["epochs_to_97"] == 3).all()
    no_val = load_sweep([write_sweep(tmp_path / "b", {"relu": ACCS["relu"]})])
    assert no_val.selected_on == "test"


def _lr_sweep(root: Path, val: bool) -> Path:
    """relu and tanh at lr 1e-3 and 3e-3, 3 seeds: relu best at 3e-3, tanh at 1e-3 (on validation)."""
    for act, best_lr in (("relu", 3e-3), ("tanh", 1e-3)):
        for lr in (1e-3, 3e-3):
            for seed in range(3):
                acc = 0.975 + (0.004 if lr == best_lr else 0) + 0.001 * seed
                write_run(
                    root / f"{act}_{lr}_{seed}",
                    act,
                    seed,
                    test_acc=(0.95, acc),
                    val_acc=(0.95, acc) if val else None,
                    optimizer={"_target_": "torch.optim.Adam", "lr": lr},
                )
    return root


@pytest.mark.parametrize("val", [True, False])
def test_best_settings_compare_across_settings_only_when_chosen_on_validation(tmp_path: Path, val: bool) -> None:
    written = build_report([_lr_sweep(tmp_path / "s", val)], tmp_path / "out")
    best = pd.read_csv(written["best_settings.csv"], index_col=0)
    assert dict(zip(best["activation"], best["optimizer.lr"], strict=True)) == {"relu": 3e-3, "tanh": 1e-3}
    text = written["report"].read_text()
    section = text.split("## Each activation at its best setting")[1].split("\n## ")[0]
    if val:  # a verdict, and the sentence says the settings differ
        assert best.loc[best["activation"] == "tanh", "verdict"].item() in ("undecided", "equivalent")
        assert "at its chosen setting against **relu** at its own chosen setting" in section
        assert "at the same setting of the other keys" not in section
    else:  # chosen on test: descriptive only
        assert "verdict" not in best or best["verdict"].isna().all()
        assert "No verdicts here: chosen on the test set" in section and "Holm p" not in section


# ---------------------------------------------------------------- scripts/report.py and atomic files


def _report_script():
    spec = importlib.util.spec_from_file_location("report_script", REPO / "scripts" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_report_script_errors_in_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "missing" if case == "missing" else tmp_path
    assert _report_script().main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert str(target) in err


def test_report_script_unknown_baseline(sweep_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _report_script().main([str(sweep_dir), "--out", str(tmp_path), "--baseline", "gelu"]) == 2
    err = capsys.readouterr().err
    assert "--baseline gelu" in err and "relu" in err and len(err.strip().splitlines()) == 1


def test_atomic_writes_are_unique_per_writer(tmp_path: Path) -> None:
    target = tmp_path / "summary.csv"
    with atomic_path(target) as a, atomic_path(target) as b:  # two writers at once: b finishes first
        assert a != b and a.parent == b.parent == tmp_path
        a.write_text("first")
        b.write_text("second")
    assert target.read_text() == "first"  # the last to finish wins; neither saw the other's half-written file
    atomic_write(target, b"bytes")
    assert target.read_bytes() == b"bytes" and [p.name for p in tmp_path.iterdir()] == ["summary.csv"]
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_bytes() == b"bytes" and len(list(tmp_path.iterdir())) == 1


def test_results_json_roundtrip(report, sweep_dir: Path) -> None:
    runs = pd.read_csv(sweep_dir / "runs.csv")
    assert set(runs["outcome"]) == {"counted", "failed", "interrupted", "running"}
    results = pd.read_csv(sweep_dir / "results.csv")
    for col in ("run", "status", "outcome", "activation", "seed", "epoch", "test_acc", "group"):
        assert col in results.columns, col
    # every run folder is in runs.csv, with the status its run.json holds
    on_disk = {p.parent.name: json.loads(p.read_text())["status"] for p in sweep_dir.glob("*/run.json")}
    assert runs.set_index("run")["status"].to_dict() == on_disk


@pytest.mark.slow  # scripts/report.py in subprocesses
def test_report_script_dedups_groups_by_identity_and_refuses_a_shared_label(tmp_path: Path) -> None:
    """Through scripts/report.py (a subprocess): the same sweep given twice counts once and says
    so; a sweep whose epochs differ is another group; one name for two configs is refused."""
    sweep = write_sweep(tmp_path / "sweep")
    res = _script(str(sweep), str(sweep), "--out", str(tmp_path / "twice"))
    assert res.returncode == 0, res.stderr
    summary = pd.read_csv(tmp_path / "twice" / "summary.csv")
    assert sorted(summary["activation"]) == ["relu", "sigmoid", "tanh"] and (summary["completed"] == 3).all()
    assert "given more than once and were read once" in (tmp_path / "twice" / "report.md").read_text()
    other = tmp_path / "five"
    for seed, acc in ACCS["relu"].items():
        write_run(other / f"activation=relu,seed={seed}", "relu", seed, (acc - 0.01, acc - 0.004, acc - 0.002, acc))
    res = _script(str(sweep), str(other), "--out", str(tmp_path / "merged"))
    assert res.returncode == 0, res.stderr
    assert len(pd.read_csv(tmp_path / "merged" / "summary.csv")) == 4  # relu at 3 and at 4 epochs, apart
    write_run(tmp_path / "clash" / "b", "relu", 1, module="torch.nn.GELU")
    res = _script(str(sweep), str(tmp_path / "clash"), "--out", str(tmp_path / "bad"))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "shared by two different activation configs" in res.stderr and "Traceback" not in res.stderr


def test_a_summary_row_without_a_p_says_why(tmp_path: Path) -> None:
    """prelu (its own module and learnt slope) pairs with relu on the seeds both ran, like any other
    activation; a row that gets no p says why in summary.csv's why column (before, the column was
    dropped, so a row with no p had no reason): here prelu at an lr relu never ran, and tanh with
    one seed shared with relu (its other runs failed)."""
    accs = [0.95, 0.96, 0.955]
    for lr in (0.001, 0.01):
        for seed, acc in enumerate(accs):
            opt = {"_target_": "torch.optim.Adam", "lr": lr}
            write_run(tmp_path / f"relu-{lr}-{seed}", "relu", seed, (0.9, acc), optimizer=opt)
            prelu_lr = lr if lr == 0.001 else 0.003
            popt = {"_target_": "torch.optim.Adam", "lr": prelu_lr}
            write_run(
                tmp_path / f"prelu-{prelu_lr}-{seed}",
                "prelu",
                seed,
                (0.9, acc + 0.002 * (seed + 1)),
                module="torch.nn.PReLU",
                optimizer=popt,
            )
            status = "completed" if lr == 0.001 or seed == 0 else "failed"
            write_run(tmp_path / f"tanh-{lr}-{seed}", "tanh", seed, (0.9, acc - 0.001), status=status, optimizer=opt)
    summary = summarize(load_sweep([tmp_path])).set_index(["activation", "optimizer.lr"])
    paired = summary.loc[("prelu", "0.001")]
    assert paired["n_pairs"] == 3 and paired["p_diff"] > 0 and paired["why"] == ""
    alone = summary.loc[("prelu", "0.003")]
    assert math.isnan(alone["p_diff"]) and alone["why"] == "no relu run at optimizer.lr=0.003 to pair it with"
    one_seed = summary.loc[("tanh", "0.01")]
    assert one_seed["n_pairs"] == 1 and math.isnan(one_seed["p_diff"]) and "one shared seed" in one_seed["why"]
    assert (summary.loc[[("relu", "0.001"), ("relu", "0.01")], "why"] == "").all()
    from actcompare.report.markdown import findings

    full = summarize(load_sweep([tmp_path]))
    text = "\n".join(findings(full, full.attrs["comparisons"], "relu"))
    assert "**prelu, optimizer.lr=0.003: not compared**: no relu run at optimizer.lr=0.003 to pair it with." in text
