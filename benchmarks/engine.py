"""The engine's performance benchmark (issue 2), measured side by side in one run.

``.venv/bin/python benchmarks/engine.py`` (``make bench``) prints a Markdown
table and writes it, with every repetition, to ``benchmarks/results/engine.json``.
It takes a few minutes on 2 idle cores; ``--quick`` is a smoke run on tiny
sizes whose numbers mean nothing (it writes JSON only with ``--output``).

Tiny
    The XOR tutorial (3 -> 4 -> 1, sigmoid, no bias, 4 samples): per-epoch time
    of ``engine.fit`` (``mse``, ``sum``, ``sgd`` 0.5, history every epoch)
    against the tutorial's hand-written NumPy loop. Repetitions alternate and
    the ratio is the median of the per-repetition ratios; every repetition also
    checks that both end with bit-identical weights.
Medium
    60,000 x 784 float32 samples (10 seeded class centroids plus unit noise),
    784 -> 256 -> 128 -> 10 relu/softmax, cross-entropy, mini-batches of 128,
    sgd with momentum 0.9, 2 threads: samples per second of ``engine.fit``,
    scikit-learn's ``MLPClassifier`` and (when importable) an equivalent PyTorch
    CPU loop. Each library runs in its own worker process (its data made
    there, warmed up once); each timed call trains a fresh model for 2
    epochs, setup and input validation included. The rounds rotate the order
    of the three and a ratio is the median of the per-round ratios.
Medium with features
    The same data and network with dropout 0.2 after both hidden layers, AdamW
    (learning rate 0.001, weight decay 0.01), a cosine learning-rate schedule
    over the epochs of the call, and gradient-norm clipping at 1.0 before every
    update: ``engine.fit`` against the PyTorch loop with ``nn.Dropout``,
    ``torch.optim.AdamW``, ``CosineAnnealingLR`` and ``clip_grad_norm_``, in their
    own worker processes, rounds rotating as above.
Peak matmul
    The best of several ``np.matmul`` calls on square float32 matrices at 2
    threads, counting ``2 m n k`` FLOPs. The training FLOPs of one sample are
    ``2 sum(W) + 2 sum(W) + 2 sum(W[1:])``: the forward products, the weight
    gradients, and the input gradients of every layer but the first, where
    ``W`` are the weight-matrix sizes (fan_in * units). Biases and elementwise
    work are not counted.
Memory
    The peak RSS (``VmHWM``) of a subprocess that creates the medium data and
    trains on it with ``engine.fit``, minus that of a subprocess that only
    imports the engine and creates the same data.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_info, threadpool_limits

# ``python benchmarks/engine.py`` puts this directory first on sys.path, where
# this very file would shadow the ``engine`` package: look in the repository instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "engine.json"
THREADS = 2
MIB = 2**20

XOR_X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float64)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float64)

FEATURES, HIDDEN, CLASSES = 784, (256, 128), 10
BATCH, LEARNING_RATE, MOMENTUM = 128, 0.01, 0.9
DROPOUT, ADAMW_RATE, ADAMW_DECAY, MAX_NORM = 0.2, 0.001, 0.01, 1.0
"""The feature row: dropout on both hidden layers, AdamW, cosine schedule, norm clipping."""
CENTROID_SCALE = 0.1
"""Class centroids are N(0, 0.1^2) per feature under N(0, 1) noise: about 90% accuracy after 3 epochs."""
DATA_SEED = 0
DATA_CHUNK = 512
"""Rows per step of adding the centroids: its temporary (1.5 MiB) bounds how much of the
engine's own memory the baseline's peak could hide."""

Labels = NDArray[np.int64]
Features = NDArray[np.float32]


@dataclass(frozen=True)
class Sizes:
    """How much the benchmark measures."""

    tiny_repetitions: int
    tiny_epochs: int
    samples: int
    rounds: int
    epochs: int
    peak_size: int
    peak_repetitions: int


FULL = Sizes(5, 20_000, 60_000, 7, 2, 4096, 5)
QUICK = Sizes(3, 300, 1_024, 1, 1, 256, 2)


# -- tiny: the XOR tutorial ---------------------------------------------------------------


def xor_initial_weights() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The tutorial's ``Wh`` (3, 4) and ``Wo`` (4, 1) from ``np.random.seed(1)``."""
    np.random.seed(1)
    Wh = np.random.random((3, 4)) * np.sqrt(2 / 3)
    Wo = np.random.random((4, 1)) * np.sqrt(2 / 4)
    return Wh, Wo


def sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The tutorial's sigmoid."""
    result: NDArray[np.float64] = 1 / (1 + np.exp(-x))
    return result


def hand_loop(Wh: NDArray[np.float64], Wo: NDArray[np.float64], epochs: int) -> float:
    """Train ``Wh`` and ``Wo`` in place with the tutorial's loop; return the seconds taken."""
    X, y = XOR_X, XOR_Y
    start = time.perf_counter()
    for _ in range(epochs):
        H = sigmoid(X @ Wh)
        out = sigmoid(H @ Wo)
        d_out = (y - out) * out * (1 - out)
        d_h = d_out @ Wo.T * H * (1 - H)
        Wo += H.T @ d_out
        Wh += X.T @ d_h
    return time.perf_counter() - start


def engine_xor(
    Wh: NDArray[np.float64], Wo: NDArray[np.float64], epochs: int
) -> tuple[float, list[NDArray[np.floating]]]:
    """Train the same network with ``engine.fit``; return the seconds and the final weights."""
    spec = {
        "input_size": 3,
        "layers": [
            {"units": 4, "activation": "sigmoid", "bias": False},
            {"units": 1, "activation": "sigmoid", "bias": False},
        ],
        "weights": [{"weights": Wh.tolist(), "bias": None}, {"weights": Wo.tolist(), "bias": None}],
    }
    config = {
        "loss": "mse",
        "reduction": "sum",
        "optimizer": {"name": "sgd", "learning_rate": 0.5},
        "epochs": epochs,
        "history_every": 1,
        "seed": 0,
    }
    network = engine.Network.from_spec(spec)
    start = time.perf_counter()
    result = engine.fit(network, XOR_X, XOR_Y, config)
    seconds = time.perf_counter() - start
    if len(result.history["loss"]) != epochs:
        raise RuntimeError("the engine did not record the history of every epoch")
    weights = [layer["weights"] for layer in network.get_weights()]
    return seconds, [w for w in weights if w is not None]


def run_tiny(sizes: Sizes) -> dict[str, Any]:
    """Alternate hand loop and engine; per-epoch microseconds, ratios and bit-equality."""
    epochs = sizes.tiny_epochs
    hand_us: list[float] = []
    engine_us: list[float] = []
    bit_identical = True
    for repetition in range(sizes.tiny_repetitions):
        Wh, Wo = xor_initial_weights()
        hand_W = [Wh.copy(), Wo.copy()]
        if repetition % 2 == 0:
            hand_seconds = hand_loop(hand_W[0], hand_W[1], epochs)
            engine_seconds, engine_W = engine_xor(Wh, Wo, epochs)
        else:
            engine_seconds, engine_W = engine_xor(Wh, Wo, epochs)
            hand_seconds = hand_loop(hand_W[0], hand_W[1], epochs)
        hand_us.append(hand_seconds / epochs * 1e6)
        engine_us.append(engine_seconds / epochs * 1e6)
        bit_identical &= all(np.array_equal(a, b) for a, b in zip(hand_W, engine_W, strict=True))
    ratios = [e / h for e, h in zip(engine_us, hand_us, strict=True)]
    return {
        "epochs_per_repetition": epochs,
        "hand_us_per_epoch": hand_us,
        "engine_us_per_epoch": engine_us,
        "ratios": ratios,
        "hand_median_us": statistics.median(hand_us),
        "engine_median_us": statistics.median(engine_us),
        "ratio_median": statistics.median(ratios),
        "bit_identical": bit_identical,
    }


# -- medium: 784 -> 256 -> 128 -> 10 -----------------------------------------------------


def make_data(samples: int, seed: int = DATA_SEED) -> tuple[Features, Labels]:
    """Seeded classification data: float32 ``X`` (samples, 784) and int64 labels (samples,).

    Each sample is its class centroid plus standard normal noise. ``X`` is
    filled in place, so creating it needs only ``DATA_CHUNK`` rows more than ``X``.
    """
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((CLASSES, FEATURES), dtype=np.float32) * CENTROID_SCALE
    labels = rng.integers(0, CLASSES, samples, dtype=np.int64)
    X = np.empty((samples, FEATURES), dtype=np.float32)
    rng.standard_normal(dtype=np.float32, out=X)
    for start in range(0, samples, DATA_CHUNK):
        X[start : start + DATA_CHUNK] += centroids[labels[start : start + DATA_CHUNK]]
    return X, labels


def network_spec(dropout: float = 0.0) -> dict[str, Any]:
    """The medium network: 784 -> 256 -> 128 -> 10, relu/softmax, xavier_uniform."""
    hidden: dict[str, Any] = {"activation": "relu"}
    if dropout:
        hidden["dropout"] = dropout
    return {
        "input_size": FEATURES,
        "layers": [
            *({"units": units, **hidden} for units in HIDDEN),
            {"units": CLASSES, "activation": "softmax"},
        ],
        "init": {"scheme": "xavier_uniform", "seed": 0},
    }


def engine_config(epochs: int, features: bool) -> dict[str, Any]:
    """The medium run's training config, with the feature row's settings if ``features``."""
    config: dict[str, Any] = {
        "loss": "cross_entropy",
        "reduction": "mean",
        "optimizer": {"name": "sgd", "learning_rate": LEARNING_RATE, "momentum": MOMENTUM},
        "epochs": epochs,
        "batch_size": BATCH,
        "shuffle": True,
        "seed": 0,
        "dtype": "float32",
    }
    if features:
        config["optimizer"] = {
            "name": "adamw",
            "learning_rate": ADAMW_RATE,
            "weight_decay": ADAMW_DECAY,
        }
        config["lr_schedule"] = {"name": "cosine", "t_max": epochs}
        config["grad_clip"] = {"max_norm": MAX_NORM}
    return config


def flops_per_sample() -> int:
    """Training FLOPs of one sample: ``2 sum(W) + 2 sum(W) + 2 sum(W[1:])`` (see the module doc)."""
    widths = (FEATURES, *HIDDEN, CLASSES)
    weights = [fan_in * units for fan_in, units in itertools.pairwise(widths)]
    return 2 * sum(weights) + 2 * sum(weights) + 2 * sum(weights[1:])


@dataclass(frozen=True)
class Trial:
    """One timed training call."""

    seconds: float
    samples_per_second: float
    loss: float
    accuracy: float | None


def trial(seconds: float, samples: int, epochs: int, loss: float, accuracy: float | None) -> Trial:
    """A :class:`Trial` from its measurements."""
    return Trial(seconds, samples * epochs / seconds, float(loss), accuracy)


def time_engine(X: Features, labels: Labels, epochs: int, features: bool = False) -> Trial:
    """Train a fresh engine network for ``epochs``; time the whole ``engine.fit`` call."""
    network = engine.Network.from_spec(network_spec(DROPOUT if features else 0.0))
    config = engine_config(epochs, features)
    start = time.perf_counter()
    result = engine.fit(network, X, labels, config)
    seconds = time.perf_counter() - start
    if network.dtype != np.float32:
        raise RuntimeError(f"the engine trained in {network.dtype}, not float32")
    history = result.history
    return trial(seconds, len(X), epochs, history["loss"][-1], history["accuracy"][-1])


def time_sklearn(X: Features, labels: Labels, epochs: int) -> Trial:
    """Train a fresh ``MLPClassifier`` (same shape and optimizer) for ``epochs``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=HIDDEN,
        activation="relu",
        solver="sgd",
        alpha=0.0,
        batch_size=BATCH,
        learning_rate="constant",
        learning_rate_init=LEARNING_RATE,
        momentum=MOMENTUM,
        nesterovs_momentum=False,
        max_iter=epochs,
        shuffle=True,
        random_state=0,
        tol=0.0,
        n_iter_no_change=epochs + 1,
    )
    with warnings.catch_warnings():
        # Stopping at max_iter is the point; sklearn warns that it has not converged.
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(X, labels)
        seconds = time.perf_counter() - start
    if model.coefs_[0].dtype != np.float32:
        raise RuntimeError(f"scikit-learn trained in {model.coefs_[0].dtype}, not float32")
    return trial(seconds, len(X), epochs, model.loss_curve_[-1], None)


def torch_installed() -> str | None:
    """PyTorch's version, or None when it is not installed (it is optional)."""
    if importlib.util.find_spec("torch") is None:
        return None
    return str(importlib.metadata.version("torch"))


def load_torch() -> Any:
    """PyTorch, limited to the benchmark's threads."""
    torch = importlib.import_module("torch")
    torch.set_num_threads(THREADS)
    return torch


def time_torch(
    torch: Any, X: Features, labels: Labels, epochs: int, features: bool = False
) -> Trial:
    """The equivalent PyTorch CPU loop: shuffled index slices, SGD with momentum, float32;
    with ``features``, dropout, AdamW, a cosine schedule stepped per epoch and norm clipping.

    Batches are gathered with ``index_select`` (``X[index]`` is several times
    slower on tensors this large); it records the epoch loss and accuracy as
    ``engine.fit`` does.
    """
    nn = torch.nn
    torch.manual_seed(0)
    widths = (FEATURES, *HIDDEN)
    layers: list[Any] = []
    for fan_in, units in itertools.pairwise(widths):
        layers += [nn.Linear(fan_in, units), nn.ReLU()]
        if features:
            layers.append(nn.Dropout(DROPOUT))
    model = nn.Sequential(*layers, nn.Linear(widths[-1], CLASSES))
    scheduler = None
    if features:
        optimizer = torch.optim.AdamW(model.parameters(), lr=ADAMW_RATE, weight_decay=ADAMW_DECAY)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    clip = torch.nn.utils.clip_grad_norm_
    loss_fn = nn.CrossEntropyLoss()
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(0)
    n = len(X)
    start = time.perf_counter()
    total, correct = 0.0, 0
    for _ in range(epochs):
        total, correct = 0.0, 0
        order = torch.randperm(n, generator=generator)
        for first in range(0, n, BATCH):
            index = order[first : first + BATCH]
            xb, yb = torch.index_select(X_t, 0, index), torch.index_select(y_t, 0, index)
            optimizer.zero_grad()
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            if features:
                clip(model.parameters(), MAX_NORM)
            optimizer.step()
            total += float(loss.item()) * len(index)
            correct += int((logits.argmax(1) == yb).sum())
        if scheduler is not None:
            scheduler.step()
    seconds = time.perf_counter() - start
    return trial(seconds, n, epochs, total / n, correct / n)


def matmul_peak(size: int, repetitions: int) -> float:
    """FLOP/s of the best of ``repetitions`` float32 ``np.matmul`` of (size, size) matrices."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(repetitions))
    return 2 * size**3 / best


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def runner(name: str) -> Callable[[Features, Labels, int], Trial]:
    """The timed training call of ``engine``, ``sklearn`` or ``torch`` (``+features``: the
    feature row's settings)."""
    library, _, variant = name.partition("+")
    features = variant == "features"
    if library == "engine":
        return lambda X, labels, epochs: time_engine(X, labels, epochs, features)
    if library == "sklearn":
        return time_sklearn
    torch = load_torch()
    return lambda X, labels, epochs: time_torch(torch, X, labels, epochs, features)


def worker(name: str, samples: int) -> None:
    """Subprocess body for one library: create the data and warm up, print ``ready``,
    then train for the number of epochs on each line of stdin and print the trial as JSON.
    """
    run = runner(name)
    with threadpool_limits(limits=THREADS):
        X, labels = make_data(samples)
        warm = min(samples, 4096)
        run(X[:warm], labels[:warm], 1)  # thread pools, lazy imports, first-call caches
        print("ready", flush=True)
        for line in sys.stdin:
            print(json.dumps(asdict(run(X, labels, int(line)))), flush=True)


class Worker:
    """A :func:`worker` subprocess: each library trains in its own process, so no
    library's idle thread pool or BLAS copy competes with another's timed run."""

    def __init__(self, name: str, samples: int) -> None:
        self.name = name
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
        self.process = subprocess.Popen(
            [*command, "--samples", str(samples)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker exited ({self.process.wait()})")
        return line

    def wait_ready(self) -> None:
        """Block until the worker has its data and has warmed up."""
        if self._line().strip() != "ready":
            raise RuntimeError(f"the {self.name} worker did not start")

    def trial(self, epochs: int) -> Trial:
        """Time one training call of ``epochs`` on a fresh model."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{epochs}\n")
        self.process.stdin.flush()
        return Trial(**json.loads(self._line()))

    def close(self) -> None:
        """End the worker."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


def run_medium(sizes: Sizes, with_torch: bool, features: bool = False) -> dict[str, Any]:
    """Rounds of engine, scikit-learn and PyTorch in rotating order; medians and ratios.

    With ``features``: rounds of the feature row's engine and PyTorch runs instead
    (ratios keyed ``torch``, the first name is always the engine's).
    """
    names = (
        ["engine+features", *(["torch+features"] if with_torch else [])]
        if features
        else ["engine", "sklearn", *(["torch"] if with_torch else [])]
    )
    workers = {name: Worker(name, sizes.samples) for name in names}
    try:
        for each in workers.values():
            each.wait_ready()
        peak = matmul_peak(sizes.peak_size, sizes.peak_repetitions)
        trials: dict[str, list[Trial]] = {name: [] for name in names}
        for round_ in range(sizes.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                trials[name].append(workers[name].trial(sizes.epochs))
    finally:
        for each in workers.values():
            each.close()
    flops = flops_per_sample()
    trials = {name.partition("+")[0]: runs for name, runs in trials.items()}
    speeds = {name: [t.samples_per_second for t in runs] for name, runs in trials.items()}
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    ratios = {
        name: statistics.median(e / o for e, o in zip(speeds["engine"], values, strict=True))
        for name, values in speeds.items()
        if name != "engine"
    }
    return {
        "samples": sizes.samples,
        "epochs_per_call": sizes.epochs,
        "rounds": sizes.rounds,
        "threads": THREADS,
        "trials": {name: [asdict(t) for t in runs] for name, runs in trials.items()},
        "samples_per_second": medians,
        "best_samples_per_second": {name: max(values) for name, values in speeds.items()},
        "ratios": ratios,
        "flops_per_sample": flops,
        "matmul_peak_flops": peak,
        "matmul_peak_size": sizes.peak_size,
        "peak_fraction": {name: speed * flops / peak for name, speed in medians.items()},
        "data_bytes": sizes.samples * (FEATURES * 4 + 8),
    }


# -- memory -------------------------------------------------------------------------------


def peak_rss() -> int:
    """This process's peak resident set size in bytes (``VmHWM``)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(mode: str, samples: int, epochs: int) -> None:
    """Subprocess body: create the data, train with the engine unless ``baseline``; print JSON."""
    with threadpool_limits(limits=THREADS):
        X, labels = make_data(samples)
        if mode == "engine":
            time_engine(X, labels, epochs)
    print(json.dumps({"peak_rss": peak_rss(), "data_bytes": X.nbytes + labels.nbytes}))


def measure_child(mode: str, samples: int, epochs: int) -> dict[str, int]:
    """Run :func:`child` in a fresh interpreter and return what it printed."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    command += ["--samples", str(samples), "--epochs", str(epochs)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    return result


def run_memory(sizes: Sizes) -> dict[str, Any]:
    """Peak RSS of an engine run minus that of a process that only creates the data."""
    baseline = measure_child("baseline", sizes.samples, sizes.epochs)
    trained = measure_child("engine", sizes.samples, sizes.epochs)
    data = trained["data_bytes"]
    above = trained["peak_rss"] - baseline["peak_rss"]
    return {
        "baseline_peak_rss": baseline["peak_rss"],
        "engine_peak_rss": trained["peak_rss"],
        "above_baseline": above,
        "data_bytes": data,
        "limit": data + 64 * MIB,
    }


# -- report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        if names:
            cpu = names[0].split(":", 1)[1].strip()
    blas = [
        f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')})"
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": sorted(set(blas)),
        "environment": {
            key: value
            for key, value in sorted(os.environ.items())
            if key.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO_"))
        },
    }


def yes(condition: bool) -> str:
    """``yes`` or ``no``."""
    return "yes" if condition else "**no**"


def table(
    tiny: dict[str, Any],
    medium: dict[str, Any],
    featured: dict[str, Any],
    memory: dict[str, Any],
) -> str:
    """The results as a Markdown table."""
    speed, ratios, fraction = (
        medium["samples_per_second"],
        medium["ratios"],
        medium["peak_fraction"],
    )
    gflops = medium["matmul_peak_flops"] / 1e9
    rows = [
        ("Measure", "engine", "reference", "ratio", "goal", "met"),
        (
            f"Tiny: XOR 3-4-1, µs/epoch (median of {len(tiny['ratios'])} x "
            f"{tiny['epochs_per_repetition']:,} epochs; weights bit-identical: "
            f"{'yes' if tiny['bit_identical'] else 'NO'})",
            f"{tiny['engine_median_us']:.2f}",
            f"hand loop {tiny['hand_median_us']:.2f}",
            f"{tiny['ratio_median']:.2f}",
            "≤ 1.0",
            yes(tiny["ratio_median"] <= 1.0),
        ),
        (
            "Medium: samples/s vs scikit-learn MLPClassifier",
            f"{speed['engine']:,.0f}",
            f"{speed['sklearn']:,.0f}",
            f"{ratios['sklearn']:.2f}",
            "≥ 1.5",
            yes(ratios["sklearn"] >= 1.5),
        ),
    ]
    if "torch" in speed:
        rows.append(
            (
                "Medium: samples/s vs PyTorch CPU",
                f"{speed['engine']:,.0f}",
                f"{speed['torch']:,.0f}",
                f"{ratios['torch']:.2f}",
                "≥ 1.0",
                yes(ratios["torch"] >= 1.0),
            )
        )
    else:
        rows.append(("Medium: samples/s vs PyTorch CPU", "", "not installed", "", "≥ 1.0", ""))
    feature_row = (
        f"Medium with dropout {DROPOUT:g} (both hidden layers), adamw, cosine schedule, "
        f"clip_grad_norm {MAX_NORM:g}: samples/s vs PyTorch CPU with the same"
    )
    feature_speed, feature_ratios = featured["samples_per_second"], featured["ratios"]
    if "torch" in feature_speed:
        rows.append(
            (
                feature_row,
                f"{feature_speed['engine']:,.0f}",
                f"{feature_speed['torch']:,.0f}",
                f"{feature_ratios['torch']:.2f}",
                "≥ 1.0",
                yes(feature_ratios["torch"] >= 1.0),
            )
        )
    else:
        rows.append(
            (feature_row, f"{feature_speed['engine']:,.0f}", "not installed", "", "≥ 1.0", "")
        )
    others = ", ".join(
        f"{name} {value:.0%}" for name, value in fraction.items() if name != "engine"
    )
    rows += [
        (
            f"Medium: fraction of the matmul peak ({gflops:.0f} GFLOP/s, "
            f"{medium['flops_per_sample'] / 1e6:.2f} MFLOP/sample)",
            f"{fraction['engine']:.0%}",
            others,
            "",
            "",
            "",
        ),
        (
            "Memory: peak RSS of the medium engine run above the baseline",
            f"{memory['above_baseline'] / MIB:.0f} MiB",
            f"data {memory['data_bytes'] / MIB:.0f} MiB; baseline "
            f"{memory['baseline_peak_rss'] / MIB:.0f} MiB, engine "
            f"{memory['engine_peak_rss'] / MIB:.0f} MiB",
            "",
            f"≤ data + 64 = {memory['limit'] / MIB:.0f} MiB",
            yes(memory["above_baseline"] <= memory["limit"]),
        ),
    ]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)


def learned(medium: dict[str, Any]) -> str:
    """The loss (and accuracy) of each library's last trial."""
    return ", ".join(
        f"{name} loss {t['loss']:.3f}"
        + ("" if t["accuracy"] is None else f" (accuracy {t['accuracy']:.1%})")
        for name, t in ((name, runs[-1]) for name, runs in medium["trials"].items())
    )


def details(medium: dict[str, Any], featured: dict[str, Any], info: dict[str, Any]) -> str:
    """The lines printed under the table: sizes, learning, machine."""
    return "\n".join(
        [
            f"Medium: {medium['samples']:,} samples, {medium['epochs_per_call']} epochs per "
            f"timed fit, {medium['rounds']} rounds, {medium['threads']} threads; "
            f"after the last round: {learned(medium)}; with the features: "
            f"{learned(featured)}.",
            "Fastest round of each: "
            + ", ".join(
                f"{name} {speed:,.0f}" for name, speed in medium["best_samples_per_second"].items()
            )
            + " samples/s.",
            f"Machine: {info['cpu']}, {info['cores']} cores, {info['platform']}, "
            f"Python {info['python']}, NumPy {info['numpy']}, {'; '.join(info['blas'])}, "
            f"scikit-learn {info['sklearn']}, PyTorch {info['torch'] or 'not installed'}"
            + "".join(f", {key}={value}" for key, value in info["environment"].items())
            + ".",
            "Load average (1 min) before and after: "
            + " and ".join(f"{load:.1f}" for load in info["load_average"])
            + " (other processes slow the 2-thread matrix products down a lot).",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run on tiny sizes")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the JSON (default: {RESULTS.relative_to(ROOT)}; "
        "--quick writes only when this is given)",
    )
    parser.add_argument("--child", choices=("baseline", "engine"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--worker",
        choices=("engine", "sklearn", "torch", "engine+features", "torch+features"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--samples", type=int, default=FULL.samples, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=FULL.epochs, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.samples, args.epochs)
        return
    if args.worker is not None:
        worker(args.worker, args.samples)
        return
    sizes = QUICK if args.quick else FULL
    torch_version = torch_installed()
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    with threadpool_limits(limits=THREADS):
        tiny = run_tiny(sizes)
        medium = run_medium(sizes, torch_version is not None)
        featured = run_medium(sizes, torch_version is not None, features=True)
    memory = run_memory(sizes)
    info = machine()
    info["sklearn"] = importlib.metadata.version("scikit-learn")
    info["torch"] = torch_version
    info["load_average"] = [load_before, os.getloadavg()[0]]
    markdown = table(tiny, medium, featured, memory)
    command = shlex.join(["python", "benchmarks/engine.py", *(argv or sys.argv[1:])])
    print(markdown)
    print()
    print(details(medium, featured, info))
    if args.quick:
        print("(--quick: a smoke run on tiny sizes; the numbers mean nothing)")
    print(f"Took {time.perf_counter() - started:.0f} s.")
    output = args.output if args.output is not None or args.quick else RESULTS
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        results = {
            "command": command,
            "quick": args.quick,
            "machine": info,
            "tiny": tiny,
            "medium": medium,
            "medium_features": featured,
            "memory": memory,
            "table": markdown,
        }
        output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
