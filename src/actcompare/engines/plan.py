"""Which jobs may share one program (a stacked group), and how a group's models are laid out.

A pure function of the jobs' resolved configs (dicts), tested without Hydra or a GPU: jobs that agree
on everything but their seed, activation, model.init and the optimizer values ``optim.per_model_keys``
names (lr, betas, eps, weight_decay, momentum, dampening) train together; anything that changes shapes,
data, the batch order or the optimizer class splits the group (docs/speed.md: "What fuses").
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from typing import Any

from .. import runs
from ..errors import ConfigError
from .optim import per_model_keys

log = logging.getLogger(__name__)

# Optimizers that update every element of a parameter on its own: stacked tensors then train
# exactly like separate models. Any other optimizer runs its models one at a time.
ELEMENTWISE_OPTIMIZERS = {
    "torch.optim.Adam",
    "torch.optim.AdamW",
    "torch.optim.SGD",
    "torch.optim.RMSprop",
    "torch.optim.Adagrad",
    "torch.optim.Adamax",
    "torch.optim.NAdam",
    "torch.optim.RAdam",
}
# Keys whose values may differ inside one stacked group: each model gets its own. So may the optimizer
# values that engines.optim.per_model_keys names for the group's optimizer (Adam, AdamW, SGD: lr, betas,
# eps, weight_decay, momentum, dampening), stepped by one StackedOptimizer.
MODEL_KEYS = ("seed", "activation", "model.init")
# Bookkeeping keys that still must agree inside one program: where it runs and which data it reads.
SHARED_BOOKKEEPING = ("device", "threads", "data.root", "data.download")


def group_key(config: dict[str, Any]) -> str:
    """Jobs with equal keys can train in one stacked group: everything but the per-model keys
    and the per-run bookkeeping (diagnostics, save_model, tracker, ...) must agree."""
    rest = dict(config)
    per_model = [f"optimizer.{k}" for k in per_model_keys(config.get("optimizer") or {})]
    for key in (*MODEL_KEYS, *per_model, *(k for k in runs.BOOKKEEPING_KEYS if k not in SHARED_BOOKKEEPING)):
        rest = runs.without(rest, key)
    return json.dumps(rest, sort_keys=True, default=str)


def fusable(config: dict[str, Any]) -> bool:
    return str(config["optimizer"].get("_target_")) in ELEMENTWISE_OPTIMIZERS


def plan(configs: Sequence[dict[str, Any]], max_models: int, alone: Sequence[int] = ()) -> list[list[int]]:
    """Split job indices into stacked groups: same group_key, then whole rectangles of
    variants x seeds (every variant with every seed), at most ``max_models`` models each. Jobs
    in ``alone`` get a group of their own."""
    if max_models < 1:
        raise ConfigError(f"hydra.launcher.max_models={max_models} is not allowed: use a number >= 1")
    by_key: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        by_key.setdefault(group_key(config) if fusable(config) and i not in alone else f"alone-{i}", []).append(i)
    groups: list[list[int]] = []
    for members in by_key.values():
        # variant -> {seed: job}; variants with the same seed set form one rectangle
        variants: dict[str, dict[int, int]] = {}
        for i in members:
            variants.setdefault(variant_key(configs[i]), {})[configs[i]["seed"]] = i
        rects: dict[tuple[int, ...], list[str]] = {}
        for v, seeds in variants.items():
            rects.setdefault(tuple(sorted(seeds)), []).append(v)
        for seeds, vs in rects.items():
            # split big rectangles: whole seeds (all variants) first, variants only when one seed is too many
            per_seed = max(1, max_models // len(vs))
            v_chunks = [vs[i : i + max_models] for i in range(0, len(vs), max_models)]
            for chunk in v_chunks:
                for s in range(0, len(seeds), per_seed):
                    groups.append([variants[v][seed] for seed in seeds[s : s + per_seed] for v in chunk])
    # duplicates (the same job twice) end up as one entry in `variants`: keep them as their own group
    placed = {i for g in groups for i in g}
    groups += [[i] for i in range(len(configs)) if i not in placed]
    return groups


def variant_key(config: dict[str, Any]) -> str:
    return json.dumps(
        [config["activation"], config["model"]["init"], own_optimizer(config)], sort_keys=True, default=str
    )


def own_optimizer(config: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """This run's values of the optimizer keys that may differ inside a stacked group."""
    opt = config.get("optimizer") or {}
    return tuple((k, tuple(opt[k]) if isinstance(opt[k], list) else opt[k]) for k in per_model_keys(opt) if k in opt)


def slots(seeds: Sequence[int], variants: Sequence[str], jobs: Sequence[tuple[int, str]]) -> list[int]:
    """Model index of each job (seed, variant key) in the engines' layout: m = seed index * V + variant index."""
    return [seeds.index(seed) * len(variants) + variants.index(v) for seed, v in jobs]


# ---------------------------------------------------------------- how many models fit in memory

EVAL_ROWS = 2048  # = stacked.EVAL_CHUNK: images per evaluation pass
MEMORY_SHARE = 0.5  # of the free memory a group may plan to take: room for the allocator and the rest


def model_bytes(hidden_sizes: Sequence[int], batch_size: int) -> int:
    """Estimated peak bytes one model adds to a stacked group (float32, 4 bytes a value):

    - parameters P = sum(in*out + out) five times over: the stacked weights, their gradients, two
      optimizer states (Adam's moments; SGD with momentum has one) and the standalone copy each model
      keeps for diagnostics and model.pt;
    - training activations: 4 values per hidden unit and image of a batch (pre-activation, output and
      their gradients) plus the logits;
    - evaluation: three layer-sized tensors of an EVAL_ROWS-image pass at the widest layer (a layer's
      input, its pre-activation and its output), plus the logits and their log-softmax.

    The tutorial network (784-128-128-10, batch 64): P = 118,282; 2.37 + 0.27 + 3.31 MB = 5.95 MB
    (5.7 MiB); measured on the CPU: 5.4 MiB per added model, plus ~90 MiB for the group
    (``python benchmarks/memory.py``).
    """
    sizes = (28 * 28, *hidden_sizes, 10)
    params = sum(i * o + o for i, o in itertools.pairwise(sizes))
    train = batch_size * (4 * sum(hidden_sizes) + 2 * 10)
    evaluate = EVAL_ROWS * (3 * max(sizes[1:]) + 2 * 10)
    return 4 * (5 * params + train + evaluate)


def free_memory(device: Any) -> int:
    """Bytes free for a group on ``device`` (a torch.device): the GPU's free memory, or the machine's
    available RAM (psutil: free plus reclaimable caches), at most what this process's memory cgroup
    still allows (a Slurm task's --mem, a container's limit)."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    available = int(psutil.virtual_memory().available)
    room = _cgroup_room()
    return available if room is None else min(available, room)


_CGROUP_FILES = (  # (limit, usage): cgroup v2, then v1
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _cgroup_room(files: Sequence[tuple[str, str]] = _CGROUP_FILES) -> int | None:
    """Bytes the memory cgroup still allows (its limit minus its usage), or None without a limit."""
    for limit_file, usage_file in files:
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 2**60:  # no limit (v1 says ~2^63)
            return None
        return max(0, int(limit) - usage)
    return None


def memory_cap(free_bytes: int, hidden_sizes: Sequence[int], batch_size: int, share: float = MEMORY_SHARE) -> int:
    """The most models one group may hold: ``share`` of the free bytes over model_bytes (at least 1)."""
    return max(1, int(share * free_bytes // model_bytes(hidden_sizes, batch_size)))


def fit_memory(
    configs: Sequence[dict[str, Any]], hidden_sizes: Sequence[int], batch_size: int, device: Any, share: float
) -> list[list[int]]:
    """A stacked group's jobs in parts that each fit ``share`` of ``device``'s free memory (memory_cap),
    grouped as :func:`plan` groups them: whole seeds first. One part, every job, when they all fit."""
    free = free_memory(device)
    cap = memory_cap(free, hidden_sizes, batch_size, share)
    if len(configs) <= cap:
        return [list(range(len(configs)))]
    parts = plan(configs, cap)
    log.info(
        "a group of %d models needs ~%.1f GiB, %.1f GiB is free on %s: it trains as %d groups of at most "
        "%d (%.0f %% of the free memory; hydra.launcher.max_models caps it lower)",
        len(configs),
        len(configs) * model_bytes(hidden_sizes, batch_size) / 2**30,
        free / 2**30,
        device,
        len(parts),
        cap,
        100 * share,
    )
    return parts
