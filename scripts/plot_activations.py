"""Draw every configured activation (conf/activation/*.yaml) and its autograd derivative.

Each panel covers a range that shows the activation's features (relu6's clip at 6, the flat tails
of sigmoid and tanh), in the activation's fixed report colour; a PDF is written beside the PNG.

    python scripts/plot_activations.py                      # -> outputs/activations.png (+ .pdf)
    python scripts/plot_activations.py --out fig.png relu gelu
    python scripts/plot_activations.py --range -5 5         # one range for every panel
"""

import argparse
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from actcompare.report.figures import plot_activation_shapes

CONF = Path(__file__).resolve().parent.parent / "conf"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="activation config names (default: all)")
    parser.add_argument("--out", default="outputs/activations.png", help="PNG to write (a PDF goes beside it)")
    parser.add_argument("--range", nargs=2, type=float, metavar=("LO", "HI"),
                        help="x range of every panel (default: per activation, wide enough to show its features)")
    args = parser.parse_args(argv)
    available = sorted(p.stem for p in (CONF / "activation").glob("*.yaml"))
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        print(f"error: unknown activation(s) {', '.join(unknown)}; available: {', '.join(available)}",
              file=sys.stderr)  # fmt: skip
        return 2
    modules = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in args.names or available:
            cfg = compose(config_name="config", overrides=[f"activation={name}"])
            modules[cfg.activation.name] = cfg.activation.module
    print(f"wrote {plot_activation_shapes(modules, args.out, tuple(args.range) if args.range else None)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
