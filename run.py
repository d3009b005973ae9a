"""Train and compare activation functions on MNIST.

    python run.py                                              # one run, relu
    python run.py -m activation=relu,sigmoid,tanh,leaky_relu   # a sweep + its report
    python run.py --help                                       # every option

All logic lives in src/actcompare; this file only hands Hydra's config to it.
"""

from pathlib import Path

import hydra

from actcompare.cli import guard, hydra_task


@hydra.main(version_base="1.3", config_path="pkg://actcompare.conf", config_name="config")
def main(cfg):
    return hydra_task(cfg)


if __name__ == "__main__":
    guard(main)
