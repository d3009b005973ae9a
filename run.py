"""Train and compare activation functions on MNIST.

    python run.py                                              # one run, relu
    python run.py -m activation=relu,sigmoid,tanh,leaky_relu   # a sweep + its report
    python run.py --help                                       # every option

All logic lives in src/actcompare; this file only hands the command line to it (the same entry
point as the installed `actcompare` command and `python -m actcompare`).
"""

import os
import signal


def _interrupted_while_starting(signum, frame):
    # Ctrl-C / SIGTERM while torch and Hydra are still importing (~2 s): one line, no traceback.
    # actcompare.cli.guard takes over before anything is run.
    os.write(2, b"interrupted: stopped while starting, nothing was run\n")
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted_while_starting)
signal.signal(signal.SIGTERM, _interrupted_while_starting)

from actcompare.cli import main  # noqa: E402  (after the handlers above)

if __name__ == "__main__":
    main()
