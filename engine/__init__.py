"""Backprop's engine: an exact, deterministic NumPy backpropagation library.

Usable on its own::

    import engine
    net = engine.Network.from_spec({"input_size": 2, "layers": [
        {"units": 3, "activation": "sigmoid"}, {"units": 1, "activation": "sigmoid"}]})
    result = engine.fit(net, X, y, {"loss": "mse", "epochs": 1000,
                                    "optimizer": {"name": "sgd", "learning_rate": 0.5}})
    net.predict(X)

Specs and configs are the same JSON-shaped dicts the HTTP API accepts.
"""

from engine.activations import ACTIVATIONS
from engine.callbacks import Callback
from engine.checkpoint import TrainingState
from engine.config import FitConfig
from engine.data import check_compatible, check_data
from engine.errors import ConfigError
from engine.fit import FitResult, Trainer, fit
from engine.history import history_epochs, history_points
from engine.initializers import INITIALIZERS
from engine.losses import LOSSES
from engine.network import Network
from engine.optimizers import OPTIMIZERS

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LOSSES",
    "OPTIMIZERS",
    "Callback",
    "ConfigError",
    "FitConfig",
    "FitResult",
    "Network",
    "Trainer",
    "TrainingState",
    "check_compatible",
    "check_data",
    "fit",
    "history_epochs",
    "history_points",
]
