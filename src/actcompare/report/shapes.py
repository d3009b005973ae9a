"""``actcompare-plot-activations``: draw every configured activation and its autograd derivative.

Each panel covers a range that shows the activation's features (relu6's clip at 6, the flat tails
of sigmoid and tanh), in the activation's fixed report colour; a PDF is written beside the PNG.
The activations are the packaged configs (conf/activation/*.yaml), plus those of --config-dir.

    actcompare-plot-activations                           # -> outputs/activations.png (+ .pdf)
    actcompare-plot-activations --out fig.png relu gelu
    actcompare-plot-activations --range -5 5              # one range for every panel
    actcompare-plot-activations --config-dir my_conf my_swish
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="actcompare-plot-activations", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="activation config names (default: all)")
    parser.add_argument("--out", default="outputs/activations.png", help="PNG to write (a PDF goes beside it)")
    parser.add_argument(
        "--range",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="x range of every panel (default: per activation, wide enough to show its features)",
    )
    parser.add_argument("--config-dir", type=Path, help="a folder with activation/<name>.yaml of your own")
    args = parser.parse_args(argv)

    from hydra import compose, initialize_config_module

    from .figures import plot_activation_shapes

    extra = [f"hydra.searchpath=[file://{args.config_dir.resolve()}]"] if args.config_dir else []
    with initialize_config_module(config_module="actcompare.conf", version_base="1.3"):
        available = sorted(_options(extra))
        unknown = sorted(set(args.names) - set(available))
        if unknown:
            print(
                f"error: unknown activation(s) {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr
            )
            return 2
        modules = {}
        for name in args.names or available:
            cfg = compose(config_name="config", overrides=[f"activation={name}", *extra])
            modules[cfg.activation.name] = cfg.activation.module
    print(f"wrote {plot_activation_shapes(modules, args.out, tuple(args.range) if args.range else None, pdf=True)}")
    return 0


def _options(extra: list[str]) -> list[str]:
    """The activation configs Hydra can see (the package's and any --config-dir's)."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    return loader.get_group_options("activation", config_name="config", overrides=extra)


if __name__ == "__main__":
    sys.exit(main())
