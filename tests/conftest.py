"""Shared fixtures: a tiny learnable MNIST on disk, Hydra compose(), and run.py in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from actcompare.record import write_record

# In this process, one torch thread: the tests' networks are tiny, and run.py processes started
# by the tests may be using the other cores (several threads per process then oversubscribe them).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run on the CPU unless marked ``gpu``: device=auto picks the CPU in this process and in the
    processes a test starts (under a CUDA graph, Python runs only at capture, so a test module that
    counts calls or sleeps per call would break)."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_N, TEST_N = 512, 256
SUBPROCESS_TIMEOUT = 240  # seconds from its start; a run.py call on the tiny data takes ~10 s (mostly imports)
QUEUE_TIMEOUT = 900  # seconds a queued process may wait for a free slot

# Test-only activations for run.py, found through hydra.searchpath=[file://<dir>].
EXTRA_ACTIVATIONS = {
    "crash": "name: crash\nmodule:\n  _target_: tests.helpers.Exploding\n",
    # 512 images / batch 64 = 8 steps x 2 layers + eval + diagnostics: ~0.3 s per epoch.
    "slow": "name: slow\nmodule:\n  _target_: tests.helpers.SlowReLU\n  delay: 0.015\n",
    # x * 1e4: the logits explode, the run diverges (finite or not) in its first epoch.
    "amplify": "name: amplify\nmodule:\n  _target_: tests.helpers.Amplify\n",
    # kills its own process on a 32-row training batch, once per $ACTCOMPARE_TEST_KILL_MARKER file
    "killer": "name: killer\nmodule:\n  _target_: tests.helpers.Killer\n  rows: 32\n",
}


# ---------------------------------------------------------------- tiny MNIST


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3 file as torchvision reads it: magic 0x00000803, N, 28, 28 (big-endian), uint8 pixels."""
    assert images.dtype == np.uint8 and images.ndim == 3
    header = np.array([0x00000803, *images.shape], dtype=">u4").tobytes()
    path.write_bytes(header + images.tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1 file: magic 0x00000801, N (big-endian), uint8 labels."""
    assert labels.dtype == np.uint8 and labels.ndim == 1
    path.write_bytes(np.array([0x00000801, len(labels)], dtype=">u4").tobytes() + labels.tobytes())


def make_digits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28 x 28 images: noise plus a bright 5 x 5 block whose position (in a 4 x 4 grid of 7 x 7
    cells, jittered by up to 2 pixels) encodes the label. An MLP learns it in 2-3 epochs."""
    n = len(labels)
    images = rng.integers(0, 110, size=(n, 28, 28))
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 4)
        dr, dc = rng.integers(0, 3, size=2)
        images[i, 7 * r + dr : 7 * r + dr + 5, 7 * c + dc : 7 * c + dc + 5] = rng.integers(150, 256, size=(5, 5))
    return images.astype(np.uint8)


def make_tiny_mnist(root: Path, n_train: int = TRAIN_N, n_test: int = TEST_N, seed: int = 0) -> Path:
    """Write <root>/MNIST/raw/<the four IDX files>; return root."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", make_digits(labels, rng))
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Root of a 512-train / 256-test MNIST in torchvision's layout (shared, read-only)."""
    return str(make_tiny_mnist(tmp_path_factory.mktemp("tiny_mnist")))


@pytest.fixture
def tiny_mnist_copy(tmp_path: Path) -> Path:
    """A private copy of the tiny MNIST that a test may damage."""
    return make_tiny_mnist(tmp_path / "data")


# ---------------------------------------------------------------- Hydra compose


def compose_cfg(overrides: Sequence[str] = (), return_hydra_config: bool = False):
    """conf/config.yaml composed with ``overrides``, as run.py would (without running anything)."""
    from hydra import compose, initialize_config_dir

    import actcompare.schema  # noqa: F401  (registers config_schema in the ConfigStore)

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="test"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)


@pytest.fixture(scope="session")
def tiny_cfg(tiny_mnist: str):
    """compose_cfg with data.root on the tiny MNIST and a small, quick network."""

    def make(*overrides: str):
        return compose_cfg([f"data.root={tiny_mnist}", "model.hidden_sizes=[32,32]", *overrides])

    return make


# ---------------------------------------------------------------- run.py in a subprocess


def subprocess_env(mnist_root: str | os.PathLike | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    if mnist_root is not None:
        env["MNIST_ROOT"] = str(mnist_root)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    # The tests start several run.py processes at once; with torch's default of one OpenMP thread
    # per core they oversubscribe the cores and tiny runs get 3-5x slower. One thread each.
    env["OMP_NUM_THREADS"] = "1"
    return env


class Proc:
    """``python <script> *args`` in the repository root; its output goes to files."""

    def __init__(self, args: Sequence[str], log_dir: Path, mnist_root: str | None, script: str = "run.py") -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.args = [sys.executable, script, *map(str, args)]
        self._env = subprocess_env(mnist_root)
        self._out_path, self._err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
        self._result: subprocess.CompletedProcess | None = None
        self._started = threading.Event()  # set when a slot (or the caller) has started it
        self.popen: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> Proc:
        with self._out_path.open("w") as out, self._err_path.open("w") as err:
            self.popen = subprocess.Popen(self.args, cwd=REPO, env=self._env, stdout=out, stderr=err, text=True)
        self.started_at = time.monotonic()
        self._started.set()
        return self

    @property
    def pid(self) -> int:
        self._started.wait()
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll() if self._started.is_set() else None

    def send_signal(self, sig: int = signal.SIGINT) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        if self._started.is_set() and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def wait(self, timeout: float = SUBPROCESS_TIMEOUT) -> subprocess.CompletedProcess:
        """Wait for the exit; kill the process ``timeout`` s after it started. The result is cached."""
        if self._result is None:
            if not self._started.wait(timeout=QUEUE_TIMEOUT):
                pytest.fail(f"{self.args} never started (all slots busy)")
            try:
                rc = self.popen.wait(timeout=max(1.0, self.started_at + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise
            self._result = subprocess.CompletedProcess(
                self.args, rc, self._out_path.read_text(), self._err_path.read_text()
            )
        return self._result


@pytest.fixture(scope="session")
def start_run_py(tiny_mnist: str, tmp_path_factory: pytest.TempPathFactory):
    """start_run_py(*args, script="run.py", mnist_root=<tiny>, queued=False) -> Proc.

    queued=True: the process starts when one of this worker's slots is free (a module fixture that
    starts many short processes at once); else now (timing-sensitive tests). pytest-xdist runs the
    test files in parallel, so each worker takes its share of the cores.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slots = ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2) // workers), thread_name_prefix="run.py")
    started: list[Proc] = []

    def start(*args: str, script: str = "run.py", mnist_root: str | None = tiny_mnist, queued: bool = False) -> Proc:
        proc = Proc(args, tmp_path_factory.mktemp("proc"), mnist_root, script)
        started.append(proc)
        if queued:
            slots.submit(lambda: proc.start().popen.wait())  # holds its slot until the process exits
        else:
            proc.start()
        return proc

    yield start
    slots.shutdown(wait=False, cancel_futures=True)
    for proc in started:  # never leave a child behind
        proc.kill()


@pytest.fixture(scope="session")
def run_py(start_run_py):
    """run_py(*args, timeout=...) -> CompletedProcess of ``python run.py *args`` on the tiny MNIST."""

    def run(*args: str, timeout: float = SUBPROCESS_TIMEOUT, **kwargs) -> subprocess.CompletedProcess:
        return start_run_py(*args, **kwargs).wait(timeout)

    return run


@pytest.fixture(scope="session")
def extra_conf(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The override that adds the test-only activations (crash, slow) to run.py's config."""
    conf = tmp_path_factory.mktemp("extra_conf")
    (conf / "activation").mkdir()
    for name, text in EXTRA_ACTIVATIONS.items():
        (conf / "activation" / f"{name}.yaml").write_text(text)
    return f"hydra.searchpath=[file://{conf}]"


# ---------------------------------------------------------------- reading results


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def assert_clean_error(res: subprocess.CompletedProcess, max_lines: int = 12) -> None:
    """Non-zero exit with a short message on stderr and no traceback."""
    assert res.returncode != 0, f"expected failure, got 0:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= max_lines, f"stderr should be a short message, got {len(lines)} lines:\n{res.stderr}"


# ---------------------------------------------------------------- synthetic run folders (report tests)

ACT_MODULES = {
    "relu": "torch.nn.ReLU",
    "tanh": "torch.nn.Tanh",
    "sigmoid": "torch.nn.Sigmoid",
    "leaky_relu": "torch.nn.LeakyReLU",
}


def write_run(
    folder: Path,
    activation: str = "relu",
    seed: int = 0,
    test_acc: Sequence[float] = (0.95, 0.97),
    status: str = "completed",
    val_acc: Sequence[float] | None = None,
    train_loss: Sequence[float] | None = None,
    module: str | None = None,
    **config: object,
) -> Path:
    """A run folder as the recorder writes it (run.json + metrics.csv), without training.

    ``config`` entries override top-level config keys (e.g. epochs=5, optimizer={"lr": 0.1}).
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = len(test_acc)
    train_loss = list(train_loss) if train_loss is not None else [0.5 / (e + 1) for e in range(n)]
    cfg = {
        "activation": {
            "name": activation,
            "module": {"_target_": module or ACT_MODULES.get(activation, "torch.nn.ReLU")},
        },
        "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.001},
        "model": {"hidden_sizes": [32, 32], "depth": None},
        "data": {"root": "/data", "train_samples": 512, "val_samples": None},
        "seed": seed,
        "epochs": n,
        "batch_size": 64,
        "device": "cpu",
    }
    cfg.update(config)
    rows = []
    for e in range(n):
        val = "" if val_acc is None else val_acc[e]
        rows.append(
            f"{activation},{seed},{e + 1},{train_loss[e]},{1 - train_loss[e] / 2},{0.4 / (e + 1)},"
            f"{test_acc[e]},{'' if val_acc is None else 0.3},{val},0.5"
        )
    header = "activation,seed,epoch,train_loss,train_acc,test_loss,test_acc,val_loss,val_acc,epoch_seconds"
    (folder / "metrics.csv").write_text("\n".join([header, *rows]) + "\n")
    final = (
        {
            "train_loss": train_loss[-1],
            "train_acc": 1 - train_loss[-1] / 2,
            "test_loss": 0.4 / n,
            "test_acc": test_acc[-1],
        }
        if n
        else {}
    )
    record = {
        "status": status,
        "activation": activation,
        "seed": seed,
        "overrides": [f"activation={activation}"],
        "choices": {"activation": activation},
        "config": cfg,
        "epochs_completed": n,
        "final": final,
        "error": "boom" if status == "failed" else None,
        "started": f"2026-01-01T00:00:{seed:02d}",
        "git_commit": "abc",
        "torch": "2",
        "device": "cpu",
    }
    write_record(folder / "run.json", record)  # the recorder's own writer (actcompare.record)
    return folder


@pytest.fixture
def make_run():
    """make_run(folder, activation="relu", seed=0, test_acc=(...), status=..., **config) -> folder."""
    return write_run
