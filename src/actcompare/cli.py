"""Glue between Hydra's entry point (run.py) and the library: no training logic lives here."""

from __future__ import annotations

import difflib
import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from .schema import unknown_key


def unknown_choice(err: BaseException) -> str | None:
    """A one-line error for a config-group option that does not exist (activation=relux).

    Hydra raises a MissingConfigException whose ``options`` it got from its own config repository
    (the packaged configs, --config-dir, hydra.searchpath and plugins alike): this names them in
    one line instead of Hydra's twenty. None when ``err`` is not about a missing group option.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        options = getattr(err, "options", None)
        missing = getattr(err, "missing_cfg_file", None)
        if isinstance(err, MissingConfigException) and options and missing:
            group, _, name = str(missing).rpartition("/")
            close = difflib.get_close_matches(name, list(options), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            return (
                f"error: unknown {group} '{name}'{hint}: choose one of {', '.join(sorted(options))} "
                f"(or add {group}/{name}.yaml to a --config-dir)"
            )
        err = err.__cause__ or err.__context__
    return None


def config_error(err: BaseException) -> str:
    """One line for a Hydra/OmegaConf config error (misspelt key, wrong type), instead of Hydra's
    five: which override, what is wrong, and for an unknown key the nearest real one."""
    choice = unknown_choice(err)
    if choice is not None:
        return choice
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else None
    first = next(iter((getattr(err, "msg", None) or str(err)).strip().splitlines()), type(err).__name__)
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        parent = cause.parent_node if isinstance(cause.parent_node, DictConfig) else None
        root = parent._get_root() if parent is not None else None
        return "error: " + unknown_key(str(cause.full_key or cause.key), parent or [], root)
    if cause is not None:
        what = (cause.msg or str(cause)).strip().splitlines()[0]
        return f"error: {first.removeprefix('Error merging override ').rstrip('.')}: {what}"
    raw = str(err).splitlines()
    lines = [line.strip() for line in raw if line.strip() and not line.strip().startswith("See http")]
    if isinstance(err, OverrideParseException):
        hint = override_hint(str(err.override))
        detail = [line for line in lines if line != "^" and line != str(err.override)]
        return f"error: cannot parse the override '{err.override}': {hint or (detail[-1] if detail else lines[-1])}"
    starts = [i for i, line in enumerate(raw) if line.startswith("Available options")]
    if starts:  # an unknown hydra/... option; the options follow, one per tab-indented line
        options = list(itertools.takewhile(lambda line: line.startswith("\t"), raw[starts[0] + 1 :]))
        return f"error: {first}: choose one of {', '.join(o.strip() for o in options)}"
    return f"error: {'; '.join(lines) or first}"


def _tell_sweep(event: str) -> None:
    """Tell the sweep callback (when a sweep is running) how the sweep ended: ``refused`` (it then
    prints nothing more and removes the folders it made) or ``crashed`` (it removes what holds no
    run; the runs it wrote stay and are named)."""
    callback = sys.modules.get("hydra_plugins.actcompare.callback")
    if callback is not None:
        getattr(callback, event)()


def override_hint(override: str) -> str | None:
    """What to do about an override Hydra cannot parse for a reason a user can fix by quoting:
    a character outside Hydra's unquoted-value alphabet (non-ASCII, a space), or a dangling comma
    (a space after a comma splits the argument in two in the shell)."""
    key, _, value = override.partition("=")
    odd = sorted({c for c in value if ord(c) > 127 or c.isspace()})
    if odd:
        shown = ", ".join(repr(c) for c in odd)
        return (
            f"the value holds {shown}, which Hydra's override syntax takes only inside quotes: write "
            f"'{key}=\"{value}\"' (the single quotes are for the shell, the double ones for Hydra)"
        )
    if value.endswith(","):
        return (
            f"nothing follows the last comma (a space after a comma splits the argument in two in the shell): "
            f"write the values without spaces ({key}={value}<next>) or quote the whole override "
            f"('{key}={value} <next>')"
        )
    return None


def _exit_now(signum: int, frame: Any) -> None:
    """SIGTERM while already stopping: leave at once, quietly."""
    os._exit(130)


def _stopping() -> None:
    """From here on this process only exits: a further Ctrl-C (people press it twice) is ignored
    instead of raising into the exit path (a traceback), and SIGTERM ends it at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_now)


EXIT_GRACE_SECONDS = 10.0  # after Ctrl-C: how long the interpreter may take to exit normally


def guard(main: Callable[[], Any]) -> None:
    """Run Hydra's main so that bad input, Ctrl-C and SIGTERM end with one line, no traceback.

    HYDRA_FULL_ERROR=1 (set by the user) still gives the full traceback. Ctrl-C while the entry
    point was still importing is handled before this (run.py, __main__.py: one line, exit 130).
    """
    from .interrupts import interrupt_caught, on_interrupt

    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Hydra prints config errors over 5-7 lines (and suggests `+key=` for a typo, which the typed
    # schema then rejects); this makes it raise them to us instead, to be said in one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        # Inside the try: a Ctrl-C from the first instant on is caught below. on_interrupt raises
        # it again if C code swallows it on its way up (task.py explains).
        signal.signal(signal.SIGINT, on_interrupt)
        signal.signal(signal.SIGTERM, on_interrupt)
        main()
    except KeyboardInterrupt:
        interrupt_caught()
        _stopping()
        if full_error:
            raise
        print(
            "interrupted: finished epochs and runs are on disk (run.json says 'interrupted'). "
            "To finish a sweep: rerun the same command with hydra.sweep.dir=<its folder> resume=true",
            file=sys.stderr,
            flush=True,
        )
        # A Ctrl-C that lands inside an import can leave a half-started library whose exit
        # handlers or threads never finish (seen once in CI: no exit within 60 s). Everything
        # worth keeping is on disk already (rows fsynced, run.json written), so if the normal exit
        # takes longer than this, end the process anyway.
        deadline = threading.Timer(EXIT_GRACE_SECONDS, os._exit, args=(130,))
        deadline.daemon = True  # never what keeps the process alive
        deadline.start()
        sys.exit(130)
    except SystemExit as err:  # a refusal's one line, or the sweep's own summary of unfinished runs
        _stopping()
        if err.code not in (None, 0, 130):
            _tell_sweep("refused")
        raise
    except (HydraException, OmegaConfBaseException) as err:
        _stopping()
        _tell_sweep("refused")
        if full_error:
            raise
        sys.exit(config_error(err))
    except Exception as err:
        _stopping()
        _tell_sweep("crashed")
        if full_error:
            raise
        from .stack import is_stack_failure, stack_error

        if is_stack_failure(err):  # torch or torchvision failed to import: both versions and the fix
            sys.exit(stack_error(err))
        first = next(iter(str(err).strip().splitlines()), "")
        sys.exit(f"error: {type(err).__name__}: {first} (set HYDRA_FULL_ERROR=1 for the traceback)")
    finally:
        _stopping()
        if not full_error:
            os.environ.pop("HYDRA_FULL_ERROR", None)


# Hydra's flags that print something and exit (help, the config, completion): no "starting" line.
_INFO_FLAGS = {"-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion"}


def _say_starting() -> None:
    """The command's first line, on stdout as Hydra's log lines and in their format, before the
    imports and the composing that take the first seconds (the launcher then says what it does)."""
    if _INFO_FLAGS.intersection(a.partition("=")[0] for a in sys.argv[1:]):
        return
    import time

    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
    what = "a sweep" if {"-m", "--multirun"}.intersection(sys.argv[1:]) else "a run"
    print(f"[{stamp}][actcompare] starting {what}: importing torch, composing the configs ...", flush=True)


def main() -> None:
    """``actcompare`` (console script) and ``python -m actcompare``: the same as run.py.

    The configs come from the installed package (pkg://actcompare.conf), so this works from any
    folder; --config-dir and hydra.searchpath add the user's own.
    """
    _say_starting()  # before torch's imports (~2-3 s): a first line at once
    from .stack import check_versions

    check_versions()  # a torch/torchvision pair of two releases: one line, before Hydra makes any folder

    import hydra

    from .task import hydra_task  # here: the parent of a joblib/submitit sweep needs no more

    def run(cfg: DictConfig) -> Any:
        return hydra_task(cfg)

    # Hydra names the job (hydra.job.name, hence <job>.log) after the task function's module:
    # "run", as for run.py, so every entry point writes the same files.
    run.__module__ = "run"
    guard(hydra.main(version_base="1.3", config_path="pkg://actcompare.conf", config_name="config")(run))
