"""Hydra's own reusable plugin test suites, run against the plugins this project ships: the fused
launcher (hydra/launcher=fused) with Hydra's test apps, and the sweep callback in Hydra's
integration apps. Both must behave for any app, not only actcompare's."""

from __future__ import annotations

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

from hydra_plugins.actcompare.launcher import FusedLauncher

CALLBACK = {"hydra": {"callbacks": {"actcompare": {"_target_": "hydra_plugins.actcompare.callback.SweepCallback"}}}}


@pytest.fixture(autouse=True)
def _fresh_version_base():
    """Each suite test as in a fresh process: other tests' compose(version_base="1.3") sets Hydra's
    process-wide version base, which would change the suites' apps (no chdir into the job folder)."""
    from hydra import version

    base = version.VersionBase.instance()
    saved = base.version_base
    version.setbase("1.1")  # what the suites' apps (no version_base) get in a fresh process
    yield
    base.version_base = saved


def test_discovery() -> None:
    assert FusedLauncher.__name__ in [p.__name__ for p in Plugins.instance().discover(Launcher)]


@pytest.mark.parametrize("launcher_name, overrides", [("fused", [])])
class TestFusedLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize("launcher_name, overrides", [("fused", ["hydra.sweeper.max_batch_size=2"])])
class TestFusedLauncherBatched(BatchedSweeperTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    # Both plugins at once (each app run is a ~3 s subprocess; one pass keeps the suite short).
    [pytest.param(CALLBACK, ["-m", "hydra/launcher=fused"], id="fused+callback")],
)
class TestPluginsIntegration(IntegrationTestSuite):
    pass
