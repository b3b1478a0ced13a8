"""PNG plots of a run, rendered with matplotlib's Agg backend.

Each plot draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas
(never pyplot's global figure state), so renders in different threads do not
share a figure. Rendering is CPU work: :func:`render` runs it in a small
dedicated thread pool (:data:`RENDER_THREADS` threads), so neither the event
loop nor the request thread pool is held while a plot is drawn, and at most
that many plots are drawn at once; later requests wait their turn.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, LinearSegmentedColormap, ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import NDArray

import engine
from app.services.artifacts import BoundaryData, LossCurve
from app.services.compare import Curve
from app.services.inference import reduced_outputs

matplotlib.use("Agg")  # no display on a server; figures below use the Agg canvas explicitly

RENDER_THREADS = 2
DPI = 100
MIN_SIZE = 160
MAX_SIZE = 2400
DEFAULT_WIDTH = 640
DEFAULT_HEIGHT = 480
MAX_LOSS_POINTS = 2000
"""The loss plot reads the history downsampled evenly to at most this many points."""
MARKER_POINTS = 50
"""Curves of at most this many points mark each recorded epoch."""
GRID_POINTS = 200
"""The decision boundary evaluates the network on a GRID_POINTS x GRID_POINTS grid."""
PADDING = 0.1
"""The grid extends the data's range by this fraction on every side."""

# Orange for low outputs / class 0, blue for high / class 1, as TensorFlow Playground.
PLAYGROUND_CMAP = LinearSegmentedColormap.from_list("playground", ["#f59322", "#e8eaeb", "#0877bd"])
# The same, mixed 40% with white: the plane is lighter than the points drawn on it.
PLAYGROUND_BACKGROUND = LinearSegmentedColormap.from_list(
    "playground-background", ["#f9be7a", "#f1f2f3", "#6badd7"]
)
CLASS_COLORS = [
    "#f59322",
    "#0877bd",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]

_pool = ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="plot")


async def render(function: Callable[..., bytes], *args: Any, **kwargs: Any) -> bytes:
    """Run ``function(*args, **kwargs)`` in the plot thread pool and await its PNG."""
    future = _pool.submit(function, *args, **kwargs)
    return await asyncio.wrap_future(future)


def _figure(width: int, height: int) -> Figure:
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def render_loss(curve: LossCurve, *, width: int, height: int, log: bool) -> bytes:
    """Training (and validation) loss against the epoch.

    Parameters
    ----------
    curve : LossCurve
        The recorded history (already downsampled).
    width, height : int
        Image size in pixels.
    log : bool
        Logarithmic loss axis; non-positive values are left out.
    """
    figure = _figure(width, height)
    axes = figure.add_subplot()
    series = [("training loss", curve.loss, "#0877bd")]
    if np.isfinite(curve.val_loss).any():
        series.append(("validation loss", curve.val_loss, "#f59322"))
    for label, values, color in series:
        shown = np.where(values > 0, values, np.nan) if log else values
        marker = "o" if curve.epoch.size <= MARKER_POINTS else None
        axes.plot(
            curve.epoch, shown, label=label, color=color, linewidth=1.5, marker=marker, markersize=3
        )
    if curve.best_epoch is not None:
        axes.axvline(
            curve.best_epoch,
            color="#666666",
            linestyle="--",
            linewidth=1,
            label=f"best epoch {curve.best_epoch}",
        )
    if log:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.grid(True, alpha=0.3)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="best")
    axes.set_title(f"{curve.run_id} ({curve.status}), epoch {int(curve.epoch[-1])}", fontsize=9)
    return _png(figure)


def _grid(X: NDArray[Any]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A GRID_POINTS x GRID_POINTS mesh over the range of ``X``'s 2 columns, padded."""
    axes = []
    for column in (0, 1):
        low, high = float(X[:, column].min()), float(X[:, column].max())
        pad = (high - low) * PADDING if high > low else 0.5
        axes.append(np.linspace(low - pad, high + pad, GRID_POINTS))
    xx, yy = np.meshgrid(axes[0], axes[1])
    return xx, yy


def _target_values(y: NDArray[Any], n_outputs: int) -> NDArray[np.float64]:
    """One number per sample to color it by: the class for several outputs, else the target."""
    if y.ndim == 1:
        return np.asarray(y, dtype=np.float64)
    if n_outputs > 1 and y.shape[1] > 1:
        return np.asarray(np.argmax(y, axis=1), dtype=np.float64)
    return np.asarray(y[:, 0], dtype=np.float64)


def _finite(outputs: NDArray[Any]) -> NDArray[Any]:
    return np.asarray(np.nan_to_num(outputs, nan=0.0, posinf=1e300, neginf=-1e300))


def _grid_values(net: engine.Network, points: NDArray[Any]) -> NDArray[Any]:
    """One value per grid point, computed in the engine's row blocks: the output for
    one output unit, else the predicted class."""
    if net.output_size == 1:
        return reduced_outputs(net, points, lambda block: _finite(block)[:, 0])
    return reduced_outputs(net, points, lambda block: np.asarray(np.argmax(_finite(block), axis=1)))


def render_decision_boundary(data: BoundaryData, *, width: int, height: int) -> bytes:
    """The network's output over the plane of the data, with the data points on top.

    One output: a filled contour of the output value (a sigmoid's probability
    on a fixed 0..1 scale), points colored by their target on the same scale.
    Several outputs: the predicted class (argmax) as colored regions, points
    colored by their class. The grid goes through the network in the engine's
    row blocks (at most 4 MiB of activations each).
    """
    model = data.model
    net = engine.Network.from_spec(model.spec)
    net.set_weights(model.layers)
    X = np.asarray(data.X, dtype=np.float64)
    xx, yy = _grid(X)
    values = _grid_values(net, np.column_stack([xx.ravel(), yy.ravel()]))
    n_outputs = net.output_size
    targets = _target_values(np.asarray(data.y), n_outputs)

    figure = _figure(width, height)
    axes = figure.add_subplot()
    if n_outputs == 1:
        zz = values.reshape(xx.shape)
        if net.output_activation == "sigmoid":
            low, high = 0.0, 1.0
        else:
            finite = targets[np.isfinite(targets)]
            low = float(min(zz.min(), finite.min(initial=np.inf)))
            high = float(max(zz.max(), finite.max(initial=-np.inf)))
            if not high > low:
                low, high = low - 0.5, high + 0.5
        norm: Normalize = Normalize(vmin=low, vmax=high, clip=True)
        filled = axes.contourf(
            xx,
            yy,
            np.clip(zz, low, high),
            levels=np.linspace(low, high, 21),
            cmap=PLAYGROUND_BACKGROUND,
        )
        figure.colorbar(filled, ax=axes, label="output")
        axes.scatter(
            X[:, 0],
            X[:, 1],
            c=targets,
            cmap=PLAYGROUND_CMAP,
            norm=norm,
            edgecolors="white",
            linewidths=1.0,
            s=36,
            zorder=3,
        )
    else:
        classes = values.reshape(xx.shape)
        colors = [CLASS_COLORS[k % len(CLASS_COLORS)] for k in range(n_outputs)]
        cmap = ListedColormap(colors)
        class_norm = BoundaryNorm(np.arange(n_outputs + 1) - 0.5, n_outputs)
        axes.contourf(
            xx,
            yy,
            classes,
            levels=np.arange(n_outputs + 1) - 0.5,
            cmap=cmap,
            norm=class_norm,
            alpha=0.35,
        )
        axes.scatter(
            X[:, 0],
            X[:, 1],
            c=targets,
            cmap=cmap,
            norm=class_norm,
            edgecolors="white",
            linewidths=1.0,
            s=36,
            zorder=3,
        )
    axes.set_xlim(float(xx.min()), float(xx.max()))
    axes.set_ylim(float(yy.min()), float(yy.max()))
    axes.set_xlabel("x1")
    axes.set_ylabel("x2")
    best = " (best epoch, restored)" if model.restored_best else ""
    axes.set_title(f"{model.run_id}, epoch {model.epoch}{best}", fontsize=9)
    return _png(figure)


def render_compare(
    curves: list[Curve], *, metric: str, width: int, height: int, log: bool
) -> bytes:
    """One column of several runs against the epoch, overlaid (a legend names each run).

    Parameters
    ----------
    curves : list of Curve
        One per run, already downsampled.
    metric : str
        The column drawn (the y label).
    width, height : int
        Image size in pixels.
    log : bool
        Logarithmic y axis; non-positive values are left out.
    """
    figure = _figure(width, height)
    axes = figure.add_subplot()
    for index, curve in enumerate(curves):
        shown = np.where(curve.values > 0, curve.values, np.nan) if log else curve.values
        color = CLASS_COLORS[index % len(CLASS_COLORS)]
        axes.plot(curve.epoch, shown, label=curve.label, color=color, linewidth=1.5)
    if log:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.grid(True, alpha=0.3)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="best", fontsize=8)
    axes.set_title(f"{metric} of {len(curves)} runs", fontsize=9)
    return _png(figure)
