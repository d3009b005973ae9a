"""Every figure of the report, by kind; they only draw the numbers that ``report.stats`` computes.

- ``style``: one fixed colour per activation, the natural order of settings, panels, axes, saving;
- ``comparisons``: the headline forest plot (each comparison's paired per-seed differences, the
  interval its verdict was decided on, the ±margin band) and the differences per epoch;
- ``curves``: curves over epochs (mean ± sd over seeds) and final accuracy against a swept key;
- ``runs``: per-run pictures: diagnostics, confusion matrices, predictions;
- ``activations``: the activation shapes (the same for every sweep: drawn once, then cached).

Conventions, the same in every report: legends below the panels, never over data; values of a swept
key in natural order (``actcompare.order``); a key swept over decades on a log10 axis, powers of two
on log2 (``axis_scale``); y-axes zoomed to the data, groups that never learned
(``stats.not_learning_groups``) drawn apart and never setting a scale; the number of seeds in every
title; small multiples, one panel per setting, except for a *searched* key (``searched_keys``);
every figure a PNG, written atomically, and a PDF beside it only on request (report.pdf, --pdf).
"""

from __future__ import annotations

from .activations import activation_shapes, feature_range, plot_activation_shapes
from .comparisons import margin_of, plot_diff_curves, plot_forest
from .curves import CURVES, plot_curves, plot_vs_key
from .runs import no_gradient_columns, plot_confusion, plot_diagnostics, plot_examples
from .style import (
    COLORS,
    MAX_PANELS,
    VECTOR,
    axis_scale,
    color,
    natural_key,
    natural_sorted,
    panel_keys,
    save,
    searched_keys,
    seeds_text,
)

__all__ = [
    "COLORS",
    "CURVES",
    "MAX_PANELS",
    "VECTOR",
    "activation_shapes",
    "axis_scale",
    "color",
    "feature_range",
    "margin_of",
    "natural_key",
    "natural_sorted",
    "no_gradient_columns",
    "panel_keys",
    "plot_activation_shapes",
    "plot_confusion",
    "plot_curves",
    "plot_diagnostics",
    "plot_diff_curves",
    "plot_examples",
    "plot_forest",
    "plot_vs_key",
    "save",
    "searched_keys",
    "seeds_text",
]
