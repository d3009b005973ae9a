"""Draw every configured activation and its derivative: a thin wrapper of
``actcompare.report.shapes`` (installed: ``actcompare-plot-activations``).

    python scripts/plot_activations.py                      # -> outputs/activations.png (+ .pdf)
    python scripts/plot_activations.py --out fig.png relu gelu
"""

import sys

from actcompare.report.shapes import main

if __name__ == "__main__":
    sys.exit(main())
