"""The ready-made studies in conf/experiment/: they compose, every job validates, and shrunk, they run."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob

from actcompare.schema import validate

from .conftest import CONF_DIR, compose_cfg, read_json

PRESETS = ("tutorial", "all_activations", "depth", "lr_sweep")
# Keep in step with the README's table of studies.
DOCUMENTED_RUNS = {"tutorial": 4 * 5, "all_activations": 14 * 3, "depth": 5 * 4 * 3, "lr_sweep": 4 * 5 * 2}
# What shrinks a study for the tests: one seed, one epoch, a small net on the tiny data, and no
# diagnostics or saved models (test_cli.py covers those; here they would only add plots).
SHRINK = ("hydra.sweeper.params.seed=0", "epochs=1", "data.train_samples=256", "data.test_samples=128",
          "model.width=32", "diagnostics=false", "save_model=false")  # fmt: skip


def need(name: str) -> None:
    if not (CONF_DIR / "experiment" / f"{name}.yaml").exists():
        pytest.skip(f"conf/experiment/{name}.yaml does not exist (yet)")


def sweep_params(name: str) -> dict[str, list[str]]:
    """{key: the values it takes} of the preset's hydra.sweeper.params, globs expanded."""
    cfg = compose_cfg([f"experiment={name}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    out = {}
    for o in parsed:
        if isinstance(o.value(), Glob):
            options = sorted(p.stem for p in (CONF_DIR / o.key_or_group).glob("*.yaml"))
            out[o.key_or_group] = o.value().filter(options)
        elif o.is_sweep_override():
            out[o.key_or_group] = list(o.sweep_string_iterator())
        else:
            out[o.key_or_group] = [o.get_value_element_as_str()]
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_every_job_validates(name: str) -> None:
    need(name)
    params = sweep_params(name)
    assert "activation" in params, "a study compares activations"
    jobs = list(itertools.product(*[[f"{k}={v}" for v in vs] for k, vs in params.items()]))
    assert len(jobs) == DOCUMENTED_RUNS[name]
    for option in params["activation"]:
        assert (CONF_DIR / "activation" / f"{option}.yaml").exists(), option
    # Every distinct non-seed setting composes and validates (seeds cannot make a config invalid).
    settings = {tuple(o for o in job if not o.startswith("seed=")) for job in jobs}
    for setting in settings:
        problems = validate(compose_cfg([f"experiment={name}", *setting]))
        assert problems == [], (setting, problems)


def start_background(request: pytest.FixtureRequest) -> dict:
    """Every existing preset, shrunk, queued at the start of the session (conftest)."""
    start_run_py = request.getfixturevalue("start_run_py")
    tmp = request.getfixturevalue("tmp_path_factory").mktemp("presets")
    procs = {}
    for name in PRESETS:
        if (CONF_DIR / "experiment" / f"{name}.yaml").exists():
            out = tmp / name
            procs[name] = (
                start_run_py("-m", f"experiment={name}", *SHRINK, f"hydra.sweep.dir={out}", queued=True),
                out,
            )
    return procs


@pytest.fixture(scope="module")
def preset_runs(background) -> dict[str, tuple]:
    return {name: (proc.wait(), out) for name, (proc, out) in background[__name__].items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_preset_runs_shrunk(preset_runs, name: str) -> None:
    need(name)
    res, out = preset_runs[name]
    assert res.returncode == 0, res.stderr[-3000:]
    params = {k: v for k, v in sweep_params(name).items() if k != "seed"}
    n_jobs = len(list(itertools.product(*params.values())))
    runs = [read_json(f) for f in Path(out).glob("*/run.json")]
    assert len(runs) == n_jobs
    assert {r["status"] for r in runs} == {"completed"}
    assert {r["config"]["epochs"] for r in runs} == {1}
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == n_jobs  # one seed: one run per compared group
    assert set(summary["activation"]) == set(params["activation"])
    for key in params:
        if key != "activation":
            assert key in summary.columns, key
            assert (out / f"accuracy_vs_{key.replace('.', '_')}.png").is_file(), key
    assert (out / "report.md").is_file()
