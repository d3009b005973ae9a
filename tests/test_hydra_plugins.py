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
