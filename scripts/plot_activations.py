"""Draw every configured activation (conf/activation/*.yaml) and its autograd derivative.

    python scripts/plot_activations.py                      # -> outputs/activations.png
    python scripts/plot_activations.py --out fig.png relu gelu
"""

import argparse
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from actcompare.shapes import plot_activation_shapes

CONF = Path(__file__).resolve().parent.parent / "src" / "actcompare" / "conf"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="activation config names (default: all)")
    parser.add_argument("--out", default="outputs/activations.png", help="PNG to write")
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
    print(f"wrote {plot_activation_shapes(modules, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
