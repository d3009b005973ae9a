"""A broken torch/torchvision install stops the command in one line, before any folder is made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from actcompare import stack

from .conftest import REPO, SUBPROCESS_TIMEOUT, subprocess_env


@pytest.mark.parametrize(
    ("torch_version", "expected"),
    [
        (
            "2.14.1+cpu",
            "pip install --force-reinstall torch==2.14.1 torchvision==0.29.1 --index-url "
            "https://download.pytorch.org/whl/cpu",
        ),
        ("2.14.1+cu126", "torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cu126"),
        ("2.4.0", "pip install --force-reinstall torch==2.4.0 torchvision==0.19.0"),
    ],
)
def test_the_fix_installs_the_matching_pair_from_torchs_own_index(torch_version: str, expected: str) -> None:
    assert expected in stack.fix_command(torch_version)
    assert stack.fix_command(torch_version).endswith(expected.rsplit(" ", 1)[-1])


def test_a_mismatch_names_both_versions_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = {"torch": "2.14.1+cu126", "torchvision": "0.28.0+cpu"}
    monkeypatch.setattr(stack, "installed", versions.get)
    line = stack.stack_error(RuntimeError("operator torchvision::nms does not exist\nmore"))
    assert line.startswith("error: torch 2.14.1+cu126 and torchvision 0.28.0+cpu do not work together")
    assert "operator torchvision::nms does not exist" in line and "more" not in line
    assert line.endswith("torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cu126")
    assert "\n" not in line


def test_a_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "installed", {"torch": "2.14.1"}.get)
    line = stack.stack_error(ModuleNotFoundError("No module named 'torchvision'"))
    assert line.startswith("error: torchvision not installed") and "pip install" in line


@pytest.mark.slow
def test_a_sweep_with_a_broken_torchvision_stops_in_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    """What a torchvision built for another torch does at import (seen after a mixed install)."""
    fake = tmp_path / "site"
    (fake / "torchvision").mkdir(parents=True)
    (fake / "torchvision" / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n'
    )
    env = subprocess_env(None)
    env["PYTHONPATH"] = f"{fake}:{env['PYTHONPATH']}"
    sweep = tmp_path / "sweep"
    res = subprocess.run(
        [sys.executable, "run.py", "-m", "activation=relu,tanh", f"hydra.sweep.dir={sweep}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode not in (0, 130) and len(lines) == 1, res.stderr
    assert lines[0].startswith("error: torch ") and "operator torchvision::nms" in lines[0], lines
    assert f"torchvision {stack.installed('torchvision')}" in lines[0] and "pip install" in lines[0]
    assert not sweep.exists(), sorted(p.name for p in sweep.rglob("*"))


def test_two_releases_that_are_not_a_pair_are_refused_without_importing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "installed", {"torch": "2.13.0+cpu", "torchvision": "0.29.1"}.get)
    with pytest.raises(SystemExit) as exit_:
        stack.check_versions()
    line = str(exit_.value.code)
    assert line.startswith("error: torch 2.13.0+cpu and torchvision 0.29.1 are not a pair"), line
    assert "needs torchvision 0.28.x" in line and line.endswith(
        "torch==2.13.0 torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu"
    )
    monkeypatch.setattr(stack, "installed", {"torch": "2.14.1+cu130", "torchvision": "0.29.0"}.get)
    stack.check_versions()  # one release pair (patch levels may differ): passes


def test_only_errors_raised_by_torch_or_torchvision_module_code_count_as_the_stack(tmp_path: Path) -> None:
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms")\n')
    code = compile(
        (tmp_path / "torchvision" / "__init__.py").read_text(), str(tmp_path / "torchvision" / "__init__.py"), "exec"
    )
    try:
        exec(code, {})
    except RuntimeError as err:
        assert stack.is_stack_failure(err)
    try:
        raise RuntimeError("a run's own error")
    except RuntimeError as err:
        assert not stack.is_stack_failure(err)
