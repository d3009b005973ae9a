"""``seeds=auto``: a sweep that plans its own seed count (hydra/sweeper=auto_seeds).

    actcompare -m activation=relu,tanh,gelu seeds=auto            # pilot, plan, the rest, one report
    actcompare -m activation=relu,tanh seeds=auto hydra.sweeper.max_seeds=60 report.margin=0.2

1. A pilot: every cell of the grid (the swept values of every other key) at seeds 0..P-1, where
   P = verdicts.min_pairs(k) for the k comparisons the report will make (fewer pairs can never
   decide anything), or hydra.sweeper.pilot.
2. The pilot's report statistics give the sd of paired differences pooled over the comparisons;
   verdicts.plan_seeds turns it into N, the seeds for 80 % power at +/- report.margin under Holm,
   capped at hydra.sweeper.max_seeds. Only the variance enters, never the pilot's differences, so
   the final test keeps its type I error (an internal pilot: Wittes & Brittain 1990).
3. Seeds P..N-1 of every cell, then the sweep's one report judges all N seeds together.

The plan is written to <sweep>/seed_plan.json and named in the report's setup block. Everything
else is Hydra's basic grid sweep: the launcher (fused by default) trains each batch.
"""

import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
PLAN_FILE = "seed_plan.json"


@dataclass
class AutoSeedSweeperConf:
    _target_: str = "hydra_plugins.actcompare.seeds.AutoSeedSweeper"
    pilot: Optional[int] = None  # seeds in the pilot; null: the fewest that can give a verdict
    max_seeds: int = 40  # never more seeds than this in all
    max_batch_size: Optional[int] = None  # jobs handed to the launcher at once (null: a whole phase)


ConfigStore.instance().store(group="hydra/sweeper", name="auto_seeds", node=AutoSeedSweeperConf, provider="actcompare")


class AutoSeedSweeper(Sweeper):
    def __init__(self, pilot: Optional[int] = None, max_seeds: int = 40, max_batch_size: Optional[int] = None) -> None:
        self.pilot, self.max_seeds, self.max_batch_size = pilot, max_seeds, max_batch_size
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _grid(self, arguments: list[str]) -> list[list[str]]:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader if self.hydra_context else None)
        values: dict[str, list[str]] = {}
        for o in parser.parse_overrides(arguments):
            key = o.get_key_element()
            if key.lstrip("+~") in ("seed", "seeds"):
                if key.lstrip("+~") == "seed":
                    raise HydraException(
                        "seeds=auto plans the seeds itself: drop the seed=... override "
                        "(or drop seeds=auto to sweep seeds by hand)"
                    )
                if o.is_sweep_override():
                    raise HydraException("seeds=auto is one value: drop the other seeds options")
            if o.is_sweep_override():
                if not o.is_discrete_sweep():
                    raise HydraException(f"seeds=auto sweeps lists only: {key} is a {o.value_type.name} sweep")
                values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
            else:
                values[key] = [f"{key}={o.get_value_element_as_str()}"]
        acts = [v for k, vs in values.items() if k == "activation" for v in vs]
        if len(acts) < 2:
            raise HydraException(
                "seeds=auto plans the seeds of comparisons: sweep two or more activations (activation=relu,tanh,...)"
            )
        return [list(cell) for cell in itertools.product(*values.values())]

    def _launch(self, cells: list[list[str]], seeds: range, first_idx: int) -> int:
        jobs = [[*cell, f"seed={s}"] for cell in cells for s in seeds]
        size = self.max_batch_size or len(jobs) or 1
        for i in range(0, len(jobs), size):
            batch = jobs[i : i + size]
            self.validate_batch_is_legal(batch)
            self.launcher.launch(batch, initial_job_idx=first_idx + i)
        return first_idx + len(jobs)

    def sweep(self, arguments: list[str]) -> Any:
        # here: pandas and scipy, only when a pilot's results are judged, not at Hydra's plugin scan
        from actcompare.report import verdicts as V
        from actcompare.report.load import load_sweep
        from actcompare.report.stats import summarize

        assert self.config is not None
        cells = self._grid(arguments)
        n_acts = len({c for cell in cells for c in cell if c.startswith("activation=")})
        k_planned = max(1, len(cells) - len(cells) // n_acts)  # each non-baseline cell against its baseline
        pilot = self.pilot or V.min_pairs(k_planned)
        if not 2 <= pilot <= self.max_seeds:
            raise HydraException(f"hydra.sweeper.pilot={pilot} is not allowed: use 2 to max_seeds={self.max_seeds}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log.info("seeds=auto: pilot of %d seeds x %d cells", pilot, len(cells))
        done = self._launch(cells, range(pilot), 0)

        margin_points = float(OmegaConf.select(self.config, "report.margin", default=100 * V.DEFAULT_MARGIN))
        baseline = OmegaConf.select(self.config, "report.baseline", default=None)
        comparisons = summarize(load_sweep([sweep_dir]), baseline, margin=margin_points / 100).attrs["comparisons"]
        sd, k = comparisons.attrs.get("pooled_sd", math.nan), comparisons.attrs.get("k", k_planned)
        wanted = V.seeds_needed(sd, margin_points / 100, k)
        total = V.plan_seeds(sd, margin_points / 100, k, pilot, self.max_seeds)
        plan = {
            "pilot": pilot,
            "pooled_sd_points": None if math.isnan(sd) else round(100 * sd, 4),
            "comparisons": k,
            "margin_points": margin_points,
            "seeds_needed": wanted,
            "max_seeds": self.max_seeds,
            "seeds": total,
            "capped": wanted > total,
        }
        (sweep_dir / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
        sd_text = "unknown" if math.isnan(sd) else f"{100 * sd:.3f}"
        log.info(
            "seeds=auto: paired differences vary by %s points (sd pooled over %d comparisons); %s seeds "
            "decide +/-%g points%s",
            sd_text,
            k,
            wanted if wanted <= V.MAX_SEEDS_PLANNED else "> 1000",
            margin_points,
            f"; capped at max_seeds={total}" if wanted > total else "",
        )
        if total > pilot:
            self._launch(cells, range(pilot, total), done)
        return plan
