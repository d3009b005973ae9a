"""actcompare: compare activation functions on MNIST with Hydra sweeps, tidy CSVs and plots."""

from .data import load_mnist
from .errors import ConfigError, DataError, UserError
from .experiment import run_experiment
from .model import NeuralNetwork
from .report import build_report, load_sweep, summarize
from .train import test, train

__all__ = [
    "ConfigError", "DataError", "NeuralNetwork", "UserError", "build_report", "load_mnist",
    "load_sweep", "run_experiment", "summarize", "test", "train",
]  # fmt: skip
