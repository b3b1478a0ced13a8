"""The multi-layer perceptron: its JSON spec, its parameters and its forward/backward passes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from engine.activations import ACTIVATIONS, LEAKY_RELU_SLOPE, make_activation
from engine.errors import ConfigError, Loc
from engine.fields import (
    MAX_SEED,
    as_mapping,
    get_bool,
    get_choice,
    get_float,
    get_int,
    reject_unknown,
    require_int,
)
from engine.initializers import INITIALIZERS
from engine.layers import Array, Dense, Workspace

LAYER_FIELDS = ("units", "activation", "bias", "dropout", "negative_slope")
PREDICT_BLOCK_BYTES = 4 * 1024 * 1024
"""Activation bytes of one forward pass of :meth:`Network.predict` (the widest
layer's input, pre-activations and activations), which bounds its memory."""
MAX_PREDICT_BLOCK_ROWS = 8192
"""Most rows of one forward pass of :meth:`Network.predict`."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a spec: its width, activation, bias, and optional settings.

    ``negative_slope`` is set (default 0.01) exactly for ``leaky_relu`` layers;
    ``dropout`` is the training-time dropout probability of the layer's output.
    """

    units: int
    activation: str
    bias: bool = True
    dropout: float = 0.0
    negative_slope: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The normalized JSON form: ``negative_slope`` on leaky_relu layers, ``dropout`` when set."""
        layer: dict[str, Any] = {
            "units": self.units,
            "activation": self.activation,
            "bias": self.bias,
        }
        if self.negative_slope is not None:
            layer["negative_slope"] = self.negative_slope
        if self.dropout:
            layer["dropout"] = self.dropout
        return layer


@dataclass(frozen=True)
class InitSpec:
    """How initial weights are drawn; ``seed`` is always filled in."""

    scheme: str
    seed: int
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkSpec:
    """A validated network spec (the body of ``POST /v1/networks``)."""

    input_size: int
    layers: tuple[LayerSpec, ...]
    init: InitSpec

    def to_dict(self) -> dict[str, Any]:
        """The normalized JSON form: defaults and the drawn seed filled in."""
        init: dict[str, Any] = {"scheme": self.init.scheme, "seed": self.init.seed}
        init.update(self.init.params)
        return {
            "input_size": self.input_size,
            "layers": [layer.to_dict() for layer in self.layers],
            "init": init,
        }


def draw_seed() -> int:
    """Draw a fresh seed (JSON-safe: below 2**53) from the operating system's entropy."""
    return int(np.random.default_rng().integers(0, 2**53))


def parse_layer(raw: Any, index: int, n_layers: int) -> LayerSpec:
    """Validate ``layers[index]``."""
    loc: Loc = ("layers", index)
    obj = as_mapping(raw, loc)
    reject_unknown(obj, LAYER_FIELDS, loc)
    units = require_int(obj, "units", loc, minimum=1)
    activation = get_choice(obj, "activation", tuple(ACTIVATIONS), loc)
    last = index == n_layers - 1
    if activation == "softmax":
        if index != n_layers - 1:
            raise ConfigError(
                (*loc, "activation"),
                "softmax is only allowed on the last layer; use relu, tanh or "
                "sigmoid for hidden layers",
            )
        if units < 2:
            raise ConfigError(
                (*loc, "units"),
                "a softmax layer needs at least 2 units (one per class); for a "
                "single output use sigmoid",
            )
    return LayerSpec(
        units=units,
        activation=activation,
        bias=get_bool(obj, "bias", loc, True),
        dropout=parse_dropout(obj, loc, last),
        negative_slope=parse_negative_slope(obj, loc, activation),
    )


def parse_dropout(obj: Mapping[str, Any], loc: Loc, last: bool) -> float:
    """``dropout``: a probability in [0, 1) on a hidden layer's output."""
    dropout = get_float(
        obj, "dropout", loc, default=0.0, minimum=0.0, maximum=1.0, exclusive_maximum=True
    )
    if dropout and last:
        raise ConfigError(
            (*loc, "dropout"),
            "dropout applies to hidden layers' outputs; the last layer's output is the "
            "prediction. Put the dropout on the layer before it",
        )
    return dropout


def parse_negative_slope(obj: Mapping[str, Any], loc: Loc, activation: str) -> float | None:
    """``negative_slope`` of a ``leaky_relu`` layer, in [0, 1] (default 0.01)."""
    if activation != "leaky_relu":
        if obj.get("negative_slope") is not None:
            raise ConfigError(
                (*loc, "negative_slope"), f"only applies to leaky_relu, not {activation}"
            )
        return None
    return get_float(obj, "negative_slope", loc, default=LEAKY_RELU_SLOPE, minimum=0.0, maximum=1.0)


def normalize_layers(layers: Sequence[Any]) -> list[dict[str, Any]]:
    """Layers in their normalized JSON form (defaults filled in), e.g. from an older checkpoint."""
    return [parse_layer(layer, i, len(layers)).to_dict() for i, layer in enumerate(layers)]


def parse_init(raw: Any) -> InitSpec:
    """Validate ``init``, drawing a seed when none is given."""
    loc: Loc = ("init",)
    obj = as_mapping({} if raw is None else raw, loc)
    reject_unknown(obj, ("scheme", "seed", "low", "high", "mean", "std"), loc)
    scheme = get_choice(obj, "scheme", tuple(INITIALIZERS), loc, default="xavier_uniform")
    seed = get_int(obj, "seed", loc, minimum=0, maximum=MAX_SEED)
    params: dict[str, float] = {}
    if scheme == "uniform":
        params["low"] = get_float(obj, "low", loc, default=0.0)
        params["high"] = get_float(obj, "high", loc, default=1.0)
        if params["high"] <= params["low"]:
            raise ConfigError((*loc, "high"), f"must be greater than low ({params['low']:g})")
    elif scheme == "normal":
        params["mean"] = get_float(obj, "mean", loc, default=0.0)
        params["std"] = get_float(obj, "std", loc, default=1.0, minimum=0.0)
    for key in ("low", "high", "mean", "std"):
        if key in obj and obj[key] is not None and key not in params:
            raise ConfigError(
                (*loc, key),
                f"only applies to the {'uniform' if key in ('low', 'high') else 'normal'} scheme",
            )
    return InitSpec(scheme=scheme, seed=draw_seed() if seed is None else seed, params=params)


def parse_spec(raw: Any) -> NetworkSpec:
    """Validate a JSON-shaped network spec; raise :class:`ConfigError` naming the field."""
    obj = as_mapping(raw, ())
    reject_unknown(obj, ("name", "input_size", "layers", "init", "weights"), ())
    input_size = require_int(obj, "input_size", (), minimum=1)
    layers_raw = obj.get("layers")
    if not isinstance(layers_raw, Sequence) or isinstance(layers_raw, str | bytes):
        raise ConfigError(
            ("layers",), 'must be a list of layers, e.g. [{"units": 3, "activation": "sigmoid"}]'
        )
    if not layers_raw:
        raise ConfigError(("layers",), "needs at least one layer")
    layers = tuple(parse_layer(layer, i, len(layers_raw)) for i, layer in enumerate(layers_raw))
    return NetworkSpec(input_size=input_size, layers=layers, init=parse_init(obj.get("init")))


def as_float_dtype(dtype: DTypeLike) -> np.dtype[np.floating]:
    """``dtype`` as a floating NumPy dtype (``float32`` or ``float64``)."""
    result = np.dtype(dtype)
    if result not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(("dtype",), f"must be float32 or float64, got {result}")
    return result  # type: ignore[return-value]


def as_float_matrix(value: Any, loc: Loc, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """Convert ``value`` to a finite float64 array of exactly ``shape``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            loc, f"must be numbers of shape {list(shape)} (rows of equal length)"
        ) from None
    if array.shape != shape:
        raise ConfigError(loc, f"has shape {list(array.shape)}, expected {list(shape)}")
    if not np.isfinite(array).all():
        raise ConfigError(loc, "must contain only finite numbers (no NaN or infinity)")
    return array


@dataclass(frozen=True)
class TrainingPlan:
    """What one training step over a batch of a given size needs, built once."""

    spaces: list[Workspace]
    forward: Callable[[Array], Array]
    backward: Callable[[Array], None]


class Network:
    """A multi-layer perceptron whose parameters live in one flat vector.

    Build one with :meth:`from_spec`. ``params`` and ``grads`` are flat arrays
    of length ``n_parameters``; each layer's ``W`` (fan_in, units) and ``b``
    (units,) are views into them, in layer order, weights before bias.
    """

    def __init__(self, spec: NetworkSpec, dtype: DTypeLike = np.float64) -> None:
        self.spec_obj = spec
        self.layers: list[Dense] = []
        fan_in = spec.input_size
        for layer in spec.layers:
            activation = make_activation(layer.activation, layer.negative_slope)
            self.layers.append(Dense(fan_in, layer.units, activation, layer.bias, layer.dropout))
            fan_in = layer.units
        self.dtype: np.dtype[np.floating] = as_float_dtype(dtype)
        self.params: Array = np.zeros(self.n_parameters, self.dtype)
        self.grads: Array = np.zeros(self.n_parameters, self.dtype)
        self._bind()
        self._workspaces: dict[int, list[Workspace]] = {}
        self._plans: dict[int, TrainingPlan] = {}
        self.dropout_rng: np.random.Generator | None = None
        """Where training draws the dropout masks from (:func:`engine.fit` sets it)."""

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Network:
        """Build and initialize a network from its JSON spec.

        The weights come from ``spec["weights"]`` when given, else from
        ``spec["init"]`` (scheme and seed; a missing seed is drawn and kept in
        :attr:`spec`, so the network can be rebuilt bit for bit).

        Raises
        ------
        ConfigError
            If any field is invalid; the error names the field.
        """
        parsed = parse_spec(spec)
        network = cls(parsed)
        explicit = spec.get("weights")
        if explicit is None:
            network.initialize()
        else:
            try:
                network.set_weights(explicit)
            except ConfigError as error:
                raise error.prefixed("weights") from None
        return network

    def _bind(self) -> None:
        offset = 0
        for layer in self.layers:
            offset = layer.bind(self.params, self.grads, offset)

    @property
    def spec(self) -> dict[str, Any]:
        """The normalized JSON spec (seed filled in, no ``weights``)."""
        return self.spec_obj.to_dict()

    @property
    def n_parameters(self) -> int:
        """Total number of trainable scalars."""
        return sum(layer.n_parameters for layer in self.layers)

    @property
    def input_size(self) -> int:
        """Number of input features."""
        return self.spec_obj.input_size

    @property
    def output_size(self) -> int:
        """Number of outputs (units of the last layer)."""
        return self.layers[-1].units

    @property
    def output_activation(self) -> str:
        """Key of the last layer's activation."""
        return self.layers[-1].activation.name

    def initialize(self) -> None:
        """Draw the weights from ``init`` (layer by layer, one generator); zero the biases."""
        init = self.spec_obj.init
        rng = np.random.default_rng(init.seed)
        draw = INITIALIZERS[init.scheme]
        for layer in self.layers:
            layer.W[...] = draw(rng, layer.fan_in, layer.units, init.params)
            if layer.b is not None:
                layer.b[...] = 0.0

    def astype(self, dtype: DTypeLike) -> None:
        """Convert the parameters to ``dtype`` in place (``float32`` or ``float64``)."""
        new_dtype = as_float_dtype(dtype)
        if new_dtype == self.dtype:
            return
        self.dtype = new_dtype
        self.params = self.params.astype(new_dtype)
        self.grads = np.zeros(self.n_parameters, new_dtype)
        self._bind()
        self._workspaces.clear()
        self._plans.clear()

    def copy(self) -> Network:
        """An independent network with the same spec, dtype and weights."""
        other = Network(self.spec_obj, self.dtype)
        other.params[...] = self.params
        return other

    def get_weights(self) -> list[dict[str, Array | None]]:
        """Copies of every layer's ``weights`` (fan_in, units) and ``bias`` (units,) or None."""
        return [
            {"weights": layer.W.copy(), "bias": None if layer.b is None else layer.b.copy()}
            for layer in self.layers
        ]

    def set_weights(self, weights: Sequence[Mapping[str, Any]]) -> None:
        """Set every layer's weights and bias; shapes are checked against the spec.

        Parameters
        ----------
        weights : list of dict
            ``{"weights": array-like (fan_in, units), "bias": array-like (units,) or None}``.
            One entry per layer; a missing bias on a layer that has one means zeros.
        """
        if not isinstance(weights, Sequence) or isinstance(weights, str | bytes):
            raise ConfigError((), "must be a list with one {weights, bias} entry per layer")
        if len(weights) != len(self.layers):
            raise ConfigError(
                (), f"has {len(weights)} entries; the network has {len(self.layers)} layers"
            )
        staged: list[tuple[NDArray[np.float64], NDArray[np.float64] | None]] = []
        for index, (layer, entry) in enumerate(zip(self.layers, weights, strict=True)):
            entry = as_mapping(entry, (index,))
            reject_unknown(entry, ("weights", "bias"), (index,))
            W = as_float_matrix(
                entry.get("weights"), (index, "weights"), (layer.fan_in, layer.units)
            )
            bias = entry.get("bias")
            if layer.b is None:
                if bias is not None:
                    raise ConfigError((index, "bias"), "must be null: this layer has bias false")
                staged.append((W, None))
            else:
                staged.append(
                    (
                        W,
                        np.zeros(layer.units)
                        if bias is None
                        else as_float_matrix(bias, (index, "bias"), (layer.units,)),
                    )
                )
        for layer, (W, bias_values) in zip(self.layers, staged, strict=True):
            layer.W[...] = W
            if layer.b is not None and bias_values is not None:
                layer.b[...] = bias_values

    def check_input(self, X: ArrayLike, name: str = "X") -> Array:
        """Return ``X`` as a finite (n_samples, input_size) array of the network's dtype."""
        try:
            array = np.asarray(X, dtype=self.dtype)
        except (TypeError, ValueError):
            raise ConfigError(
                (name,), "must be a list of rows of numbers, all of the same length"
            ) from None
        if array.ndim != 2:
            raise ConfigError(
                (name,), f"must be 2-D (n_samples, {self.input_size}), got {array.ndim}-D"
            )
        if array.shape[1] != self.input_size:
            raise ConfigError(
                (name,),
                f"rows have {array.shape[1]} values; the network's input_size is {self.input_size}",
            )
        if not np.isfinite(array).all():
            raise ConfigError((name,), "must contain only finite numbers (no NaN or infinity)")
        return array

    def predict(self, X: ArrayLike) -> Array:
        """Outputs of the last layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, input_size)

        Returns
        -------
        ndarray of shape (n_samples, output_size)
        """
        X = self.check_input(X)
        if X.shape[0] <= self.predict_block_rows():
            return self.forward(X)[1]
        return np.concatenate([A for _, A in self.predict_blocks(X)])

    def predict_block_rows(self) -> int:
        """Rows of one forward pass of :meth:`predict`: as many as fit
        ``PREDICT_BLOCK_BYTES`` of the widest layer's activations (at least 1, at most
        ``MAX_PREDICT_BLOCK_ROWS``). It depends on the network only.

        BLAS may round a row's outputs differently in products of other heights (its
        kernels depend on the shape), so every caller that must give ``predict``'s bits
        (the service's predict, evaluate and plots) runs these same blocks.
        """
        widest = max(layer.fan_in + 2 * layer.units for layer in self.layers)
        rows = PREDICT_BLOCK_BYTES // (int(self.dtype.itemsize) * widest)
        return max(1, min(MAX_PREDICT_BLOCK_ROWS, rows))

    def predict_blocks(self, X: Array) -> Iterator[tuple[Array, Array]]:
        """:meth:`forward` of validated ``X`` (n_samples, input_size), one block of
        :meth:`predict_block_rows` rows at a time.

        Yields
        ------
        Z, A : ndarray of shape (block_rows, output_size)
            The last layer's pre-activations and activations of the block's rows (the
            last block may be shorter).
        """
        rows = self.predict_block_rows()
        for start in range(0, X.shape[0], rows):
            yield self.forward(X[start : start + rows])

    def forward(self, X: Array) -> tuple[Array, Array]:
        """Inference forward pass of validated ``X`` (n_samples, input_size).

        Returns the last layer's pre-activations and activations, each
        (n_samples, output_size).
        """
        with np.errstate(over="ignore"):
            Z, A = X, X
            for layer in self.layers:
                Z, A = layer.forward(A)
        return Z, A

    # -- training passes (buffers reused across batches) ---------------------------------

    def workspaces(self, batch: int) -> list[Workspace]:
        """The per-layer buffers for batches of ``batch`` samples (allocated once)."""
        spaces = self._workspaces.get(batch)
        if spaces is None:
            spaces = [layer.workspace(batch, self.dtype) for layer in self.layers]
            self._workspaces[batch] = spaces
        return spaces

    @property
    def has_dropout(self) -> bool:
        """Whether any layer drops units in training."""
        return any(layer.dropout for layer in self.layers)

    def forward_train(self, X: Array, spaces: list[Workspace]) -> Array:
        """Forward pass keeping what backward needs; returns the output (batch, output_size)."""
        return self.passes(spaces)[0](X)

    def backward(self, dZ: Array, spaces: list[Workspace]) -> None:
        """Backpropagate dL/dZ of the last layer (batch, output_size) into :attr:`grads`."""
        self.passes(spaces)[1](dZ)

    def plan(self, batch: int) -> TrainingPlan:
        """Workspaces and forward/backward closures for batches of ``batch`` (cached)."""
        plan = self._plans.get(batch)
        if plan is None:
            spaces = self.workspaces(batch)
            forward, backward = self.passes(spaces)
            plan = self._plans[batch] = TrainingPlan(spaces, forward, backward)
        return plan

    def passes(
        self,
        spaces: list[Workspace],
    ) -> tuple[Callable[[Array], Array], Callable[[Array], None]]:
        """Forward and backward closures over ``spaces`` with every lookup done once.

        They exist because per-call Python overhead dominates on the tutorials'
        tiny networks. A network with dropout gets closures that also draw the
        masks (from :attr:`dropout_rng`, layer by layer in forward order) and
        multiply the gradients by them; one without gets closures with no trace
        of dropout.
        """
        if self.has_dropout:
            return self._dropout_passes(spaces)
        pairs = tuple(
            (layer.forward_train, ws) for layer, ws in zip(self.layers, spaces, strict=True)
        )
        steps = tuple(
            (
                self.layers[i].backward,
                spaces[i],
                spaces[i - 1].dA if i else None,
                self.layers[i - 1].activation.backward if i else None,
                spaces[i - 1] if i else None,
            )
            for i in range(len(self.layers) - 1, -1, -1)
        )

        def forward(X: Array) -> Array:
            A = X
            for forward_layer, ws in pairs:
                A = forward_layer(A, ws)
            return A

        def backward(dZ: Array) -> None:
            for backward_layer, ws, dX, activation_backward, below in steps:
                backward_layer(dZ, ws, dX)
                if activation_backward is not None and below is not None and dX is not None:
                    dZ = activation_backward(dX, below.Z, below.A, below.work)

        return forward, backward

    def _dropout_passes(
        self,
        spaces: list[Workspace],
    ) -> tuple[Callable[[Array], Array], Callable[[Array], None]]:
        """:meth:`passes` for a network with dropout: output = A * noise, dL/dA = dL/d(output) * noise."""
        layers = self.layers
        pairs = tuple(
            (layer.forward_train, layer.drop if ws.dropout is not None else None, ws)
            for layer, ws in zip(layers, spaces, strict=True)
        )
        steps = tuple(
            (
                layers[i].backward,
                spaces[i],
                spaces[i - 1].dA if i else None,
                layers[i - 1].activation.backward if i else None,
                spaces[i - 1] if i else None,
            )
            for i in range(len(layers) - 1, -1, -1)
        )

        def forward(X: Array) -> Array:
            rng = self.dropout_rng
            if rng is None:
                raise RuntimeError("set Network.dropout_rng before training a network with dropout")
            A = X
            for forward_layer, drop, ws in pairs:
                A = forward_layer(A, ws)
                if drop is not None and ws.dropout is not None:
                    A = drop(A, ws.dropout, rng)
            return A

        def backward(dZ: Array) -> None:
            for backward_layer, ws, dX, activation_backward, below in steps:
                backward_layer(dZ, ws, dX)
                if activation_backward is not None and below is not None and dX is not None:
                    if below.dropout is not None:
                        np.multiply(dX, below.dropout.noise, out=dX)
                    dZ = activation_backward(dX, below.Z, below.A, below.work)

        return forward, backward
