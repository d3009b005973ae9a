"""Hydra's basic sweeper plus what a comparison needs: check every job first, report last.

Selected by conf/config.yaml (``override hydra/sweeper: compare``); works with any launcher.
- Before any training: every job's config is composed and validated, so a bad value anywhere in
  the sweep stops it with one message instead of failing at job 37.
- After the jobs (also when one of them crashed at the launcher level): the sweep report is built
  from the files on disk. Hydra's on_multirun_end callbacks are skipped when a job raises; this
  is not.
- Runs recorded as failed or interrupted make the command exit non-zero, listing them.
"""

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser

log = logging.getLogger(__name__)


@dataclass
class ComparisonSweeperConf:
    _target_: str = "hydra_plugins.actcompare_sweeper.comparison_sweeper.ComparisonSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[dict[str, str]] = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="compare", node=ComparisonSweeperConf, provider="actcompare"
)


class ComparisonSweeper(BasicSweeper):
    def _jobs(self, arguments: list[str]) -> list[Sequence[str]]:
        """Every job's override list, as BasicSweeper.sweep will expand them."""
        params = self._parse_config()
        params.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        batches = self.split_arguments(parser.parse_overrides(params), None)
        return [job for batch in batches for job in batch]

    def _check(self, arguments: list[str]) -> None:
        from actcompare.schema import validate

        where: dict[str, list[str]] = defaultdict(list)
        jobs = self._jobs(arguments)
        for job in jobs:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
            for problem in validate(cfg):
                where[problem].append(",".join(job) or "(no overrides)")
        if where:
            lines = [
                f"error: {p}" + ("" if len(j) == len(jobs) else f" (in job {j[0]}" + (
                    f" and {len(j) - 1} more)" if len(j) > 1 else ")"))
                for p, j in where.items()
            ]  # fmt: skip
            raise SystemExit("\n".join(lines))

    def sweep(self, arguments: list[str]) -> Any:
        from actcompare.report import build_report, failed_runs

        self._check(arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        try:
            returns = super().sweep(arguments)
        except KeyboardInterrupt:
            raise
        except Exception:
            build_report([sweep_dir], missing_ok=True)
            raise
        paths = build_report([sweep_dir], missing_ok=True)
        if paths:
            log.info("Sweep report: %s", paths["report"])
        failed = failed_runs([sweep_dir])
        if failed:
            raise SystemExit(
                f"error: {len(failed)} run(s) failed; the others and the report are in {sweep_dir}:\n"
                + "\n".join(f"  {run}: {error}" for run, error in failed)
            )
        return returns
