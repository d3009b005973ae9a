"""``python -m actcompare ...`` and the ``actcompare`` console command: the same as run.py.

python -m actcompare -m activation=relu,tanh   # a sweep and its report, from any folder
python -m actcompare --help                    # every key, its default and meaning
"""

import os
import signal


def _interrupted_while_starting(signum, frame):
    # Ctrl-C / SIGTERM while torch and Hydra are still importing: one line, no traceback.
    # actcompare.cli.guard takes over before anything is run.
    os.write(2, b"interrupted: stopped while starting, nothing was run\n")
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted_while_starting)
signal.signal(signal.SIGTERM, _interrupted_while_starting)

from actcompare.cli import main  # noqa: E402  (after the handlers above)

if __name__ == "__main__":
    main()
