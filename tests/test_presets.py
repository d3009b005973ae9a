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


def group_options(group: str) -> list[str]:
    """The options Hydra itself finds for a config group (packaged configs, search path, plugins)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


# The README's table of studies. Every one must exist (a missing one fails, it does not skip), and
# every preset that exists must be in the table.
PRESETS = ("tutorial", "all_activations", "depth", "lr_sweep")
ACTIVATIONS = group_options("activation")
# Keep in step with the README's table of studies. all_activations globs every activation config,
# so its size follows the configs: adding an activation never breaks these tests.
DOCUMENTED_RUNS = {
    "tutorial": 4 * 10,
    "all_activations": len(ACTIVATIONS) * 3,
    "depth": 5 * 4 * 3,
    "lr_sweep": 4 * 5 * 2,
}
# What shrinks a study for the tests: one seed, one epoch, a small net on the tiny data, and no
# diagnostics or saved models (test_cli.py covers those; here they would only add plots).
SHRINK = (
    "hydra.sweeper.params.seed=0",
    "epochs=1",
    "data.train_samples=256",
    "data.test_samples=128",
    "model.width=32",
    "diagnostics=false",
    "save_model=false",
)
# ... and a validation split that fits the 256 images, for the presets that hold one out.
SHRINK_VALIDATION = {"lr_sweep": ("data.val_samples=64",)}


def test_every_documented_preset_exists_and_every_preset_is_documented() -> None:
    assert sorted(PRESETS) == group_options("experiment")


def sweep_params(name: str) -> dict[str, list[str]]:
    """{key: the values it takes} of the preset's hydra.sweeper.params, globs expanded over Hydra's options."""
    cfg = compose_cfg([f"experiment={name}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    out = {}
    for o in parsed:
        if isinstance(o.value(), Glob):
            out[o.key_or_group] = o.value().filter(group_options(o.key_or_group))
        elif o.is_sweep_override():
            out[o.key_or_group] = list(o.sweep_string_iterator())
        else:
            out[o.key_or_group] = [o.get_value_element_as_str()]
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_every_job_validates(name: str) -> None:
    params = sweep_params(name)
    assert "activation" in params, "a study compares activations"
    jobs = list(itertools.product(*[[f"{k}={v}" for v in vs] for k, vs in params.items()]))
    assert len(jobs) == DOCUMENTED_RUNS[name]
    assert set(params["activation"]) <= set(ACTIVATIONS)
    # Every distinct non-seed setting composes and validates (seeds cannot make a config invalid).
    settings = {tuple(o for o in job if not o.startswith("seed=")) for job in jobs}
    for setting in settings:
        problems = validate(compose_cfg([f"experiment={name}", *setting]))
        assert problems == [], (setting, problems)


@pytest.fixture(scope="module")
def preset_runs(start_run_py, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Every existing preset, shrunk, queued together. name -> (CompletedProcess, folder)."""
    tmp = tmp_path_factory.mktemp("presets")
    procs = {}
    for name in PRESETS:
        out = tmp / name
        procs[name] = (
            start_run_py(
                "-m",
                f"experiment={name}",
                *SHRINK,
                *SHRINK_VALIDATION.get(name, ()),
                f"hydra.sweep.dir={out}",
                queued=True,
            ),
            out,
        )
    return {name: (proc.wait(), out) for name, (proc, out) in procs.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_preset_runs_shrunk(preset_runs, name: str) -> None:
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
