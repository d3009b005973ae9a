"""The installed package, not the checkout: build the wheel, install it into a fresh virtual
environment and run a tiny sweep, ``python -m actcompare`` and the console commands from a folder
outside the repository.

The fresh environment sees this environment's site-packages (torch, Hydra, ...) through a .pth
file, but not the editable install of actcompare: .pth files inside a folder that a .pth file adds
are not processed, so ``import actcompare`` can only find the wheel's copy.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO, read_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (the build leaves nothing in the checkout)."""
    src = tmp_path_factory.mktemp("sdist")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for folder in ("src", "conf"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the dev extra installs setuptools, so no network is needed.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    (found,) = out.glob("actcompare-*.whl")
    return found


@pytest.fixture(scope="module")
def fresh_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel installed (--no-deps; dependencies come from ours)."""
    env = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "parent_site_packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    return env


def run_in(env: Path, cwd: Path, *args: str, mnist_root: str | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR", "MNIST_ROOT")}
    environ |= {"OMP_NUM_THREADS": "1", "PATH": f"{env / 'bin'}{os.pathsep}{environ.get('PATH', '')}"}
    if mnist_root:
        environ["MNIST_ROOT"] = mnist_root
    return subprocess.run(list(args), cwd=cwd, env=environ, capture_output=True, text=True, timeout=240)


def test_wheel_carries_configs_licence_and_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        meta = email.message_from_string(whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        entry_points = whl.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    conf = REPO / "conf"  # the top-level conf/, shipped as the package actcompare.conf
    for path in conf.rglob("*.yaml"):
        assert f"actcompare/conf/{path.relative_to(conf).as_posix()}" in names, path
    for path in (REPO / "src").rglob("*.py"):  # pyproject.toml lists the packages: none forgotten
        assert path.relative_to(REPO / "src").as_posix() in names, path
    assert "hydra_plugins/actcompare/launcher.py" in names and "actcompare/__main__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("Project-URL") and meta.get_all("Classifier")
    extras = set(meta.get_all("Provides-Extra"))
    assert {"optuna", "tensorboard", "parallel", "slurm", "dev"} <= extras
    requires = meta.get_all("Requires-Dist")
    assert not [r for r in requires if "==" in r.split(";")[0]], "ranges, not pins"
    assert "actcompare = actcompare.__main__:main" in entry_points
    assert "actcompare-report = actcompare.report.cli:main" in entry_points


def test_installed_package_runs_outside_the_repository(fresh_env: Path, tiny_mnist: str, tmp_path: Path) -> None:
    python = str(fresh_env / "bin" / "python")
    where = run_in(
        fresh_env,
        tmp_path,
        python,
        "-c",
        "import actcompare, hydra_plugins.actcompare.launcher as l; print(actcompare.__file__); print(l.__file__)",
    )
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(fresh_env)) for line in where.stdout.split()), where.stdout

    # the console command: a tiny sweep, configs from the package, files under this folder
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "activation=relu,tanh",
        "epochs=1",
        "data.train_samples=128",
        "model.hidden_sizes=[16]",
        "save_model=false",
        f"hydra.sweep.dir={sweep}",
    ]
    res = run_in(fresh_env, tmp_path, "actcompare", *args, mnist_root=tiny_mnist)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [read_json(p) for p in sweep.glob("*/run.json")]
    assert sorted(r["activation"] for r in records) == ["relu", "tanh"]
    assert {r["status"] for r in records} == {"completed"}
    assert (sweep / "report.md").is_file()

    # actcompare-report rebuilds the report from disk
    (sweep / "report.md").unlink()
    res = run_in(fresh_env, tmp_path, "actcompare-report", str(sweep))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (sweep / "report.md").is_file()

    # python -m actcompare: --help from the packaged configs; a bad option gives one line
    res = run_in(fresh_env, tmp_path, python, "-m", "actcompare", "--help")
    assert res.returncode == 0 and "activation: elu, gelu" in res.stdout, res.stderr[-3000:]
    res = run_in(fresh_env, tmp_path, python, "-m", "actcompare", "activation=relux")
    assert res.returncode == 1 and res.stderr.startswith("error: unknown activation 'relux'"), res.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "MNIST").exists()
