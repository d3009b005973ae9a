"""The README's examples work as written, from a fresh folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, SUBPROCESS_TIMEOUT, subprocess_env


def readme_block(section: str) -> str:
    """The first ```bash block under the README's ``## <section>`` heading."""
    text = (REPO / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", body, re.S)
    assert match, f"no bash block under '## {section}'"
    return match.group(1)


@pytest.mark.slow
def test_add_an_activation_example_runs_from_a_fresh_folder(tiny_mnist: str, tmp_path: Path) -> None:
    """Exactly the README's commands, in an empty folder, with the installed `actcompare` command."""
    env = subprocess_env(tiny_mnist)
    env.pop("PYTHONPATH")  # the user's shell: nothing of this checkout importable but the installed package
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    res = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block("Add an activation")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("run.json")]
    assert sorted(r["config"]["activation"]["name"] for r in records) == ["relu", "swish"]
    assert {r["status"] for r in records} == {"completed"}
    swish = next(r for r in records if r["config"]["activation"]["name"] == "swish")
    assert swish["config"]["activation"]["module"] == {"_target_": "swish.Swish", "beta": 1.5}
    assert next((tmp_path / "outputs").rglob("report.md")).is_file()
