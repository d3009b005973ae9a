"""The software stack: torch and torchvision must be one release pair, and must import.

A torchvision built for another torch fails at import with e.g. ``RuntimeError: operator
torchvision::nms does not exist``, which says nothing about the cause; this turns any import failure
of the stack into one line that names both installed versions and the command that fixes it.
"""

from __future__ import annotations

import re
from importlib import metadata

# torchvision's minor version is torch's plus 15 from torch 2.x on (2.4 <-> 0.19, 2.14 <-> 0.29),
# with the same patch number: https://github.com/pytorch/vision#installation lists the pairs.
TORCHVISION_MINOR_OFFSET = 15
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def installed(dist: str) -> str | None:
    """The installed version of a distribution (from its metadata, without importing it), or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def matching_torchvision(torch_version: str) -> str | None:
    """The torchvision release built against ``torch_version`` (2.14.1+cpu -> 0.29.1), or None."""
    m = re.match(r"2\.(\d+)\.(\d+)", torch_version)
    return f"0.{int(m.group(1)) + TORCHVISION_MINOR_OFFSET}.{m.group(2)}" if m else None


def fix_command(torch_version: str | None) -> str:
    """The pip line that installs a matching pair from one index (the build torch already has)."""
    if torch_version is None:
        return f"pip install torch torchvision --index-url {CPU_INDEX} (or without --index-url for CUDA builds)"
    public, _, local = torch_version.partition("+")
    vision = matching_torchvision(public)
    index = f" --index-url https://download.pytorch.org/whl/{local}" if local else ""
    pair = f"torch=={public} torchvision=={vision}" if vision else f"torch=={public} torchvision"
    return f"pip install --force-reinstall {pair}{index}"


def stack_error(err: BaseException) -> str:
    """One line for an import failure of torch/torchvision: both versions, the cause, the fix."""
    torch_v, vision_v = installed("torch"), installed("torchvision")
    cause = next(iter(str(err).strip().splitlines()), "") or type(err).__name__
    if torch_v is None or vision_v is None:
        missing = " and ".join(n for n, v in (("torch", torch_v), ("torchvision", vision_v)) if v is None)
        return (
            f"error: {missing} not installed ({type(err).__name__}: {cause}); install them with: {fix_command(torch_v)}"
        )
    return (
        f"error: torch {torch_v} and torchvision {vision_v} do not work together ({type(err).__name__}: {cause}); "
        f"install a matching pair from one index: {fix_command(torch_v)}"
    )


def check_versions() -> None:
    """torch and torchvision installed as one release pair, read from their metadata (milliseconds:
    nothing is imported, so a typo is still refused at once); SystemExit with one line if not.
    A pair of matching versions from different builds is caught where torch is first imported
    (``is_stack_failure``), before any run trains."""
    torch_v, vision_v = installed("torch"), installed("torchvision")
    if torch_v is None or vision_v is None:
        missing = "torch" if torch_v is None else "torchvision"
        raise SystemExit(stack_error(ModuleNotFoundError(f"No module named '{missing}'")))
    expected = matching_torchvision(torch_v.partition("+")[0])
    if expected and vision_v.split(".")[:2] != expected.split(".")[:2]:
        raise SystemExit(
            f"error: torch {torch_v} and torchvision {vision_v} are not a pair (torch {torch_v.partition('+')[0]} "
            f"needs torchvision {expected.rsplit('.', 1)[0]}.x); install a matching pair from one index: "
            f"{fix_command(torch_v)}"
        )


def is_stack_failure(err: BaseException) -> bool:
    """Whether ``err`` was raised while torch or torchvision was being imported (their module code)."""
    if not isinstance(err, (ImportError, RuntimeError, OSError, AttributeError)):
        return False
    tb = err.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        parts = code.co_filename.replace("\\", "/").split("/")
        if code.co_name == "<module>" and ("torch" in parts or "torchvision" in parts):
            return True
        tb = tb.tb_next
    return False
