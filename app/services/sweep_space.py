"""A sweep's search space: parameter paths into the run config or the network spec,
and their distributions.

A parameter is a dotted path. One that starts with a network spec field
(:data:`SPEC_ROOTS`: ``layers``, ``init``) addresses the sweep's network spec:
``layers.0.units`` sets ``spec["layers"][0]["units"]``, and each trial with such a
parameter trains a network of its own. Every other path addresses the run ``config``
of the sweep (the ``POST /v1/runs`` body without its ids): ``optimizer.learning_rate``
sets ``config["optimizer"]["learning_rate"]``. A digit segment indexes an existing list.
The distributions become Optuna's (``FloatDistribution`` with ``log``,
``IntDistribution``, ``CategoricalDistribution``) so that the samplers draw from them.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from app.api.sweep_schemas import ParameterSpec
from app.errors import InvalidInputError

RESERVED_ROOTS = frozenset(
    {"network_id", "dataset_id", "name", "tags", "metadata", "notify_url", "init_from"}
)
"""Config fields a sweep sets itself or that are not hyperparameters."""
MAX_GRID_POINTS = 100_000
SPEC_ROOTS = frozenset({"layers", "init"})
"""First segments of the paths that address the network spec, not the run config."""


def is_spec_path(path: str) -> bool:
    """Whether ``path`` addresses the network spec (``layers.0.units``)."""
    return path.split(".", 1)[0] in SPEC_ROOTS


def split(parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``parameters`` as (the run config's, the network spec's)."""
    spec = {path: value for path, value in parameters.items() if is_spec_path(path)}
    config = {path: value for path, value in parameters.items() if path not in spec}
    return config, spec


def _loc(path: str, *rest: str | int) -> tuple[str | int, ...]:
    return ("body", "parameters", path, *rest)


def distribution(path: str, spec: ParameterSpec) -> BaseDistribution:
    """The Optuna distribution of one parameter; 422 at ``body.parameters.<path>``."""
    kind, values = spec.kind, spec.values
    if kind == "choice":
        if not values:
            raise InvalidInputError(_loc(path, kind), "give at least one value to choose from")
        if len({repr(value) for value in values}) != len(values):
            raise InvalidInputError(_loc(path, kind), "the choices must be distinct")
        return CategoricalDistribution(values)
    low, high = values
    if low >= high:
        raise InvalidInputError(_loc(path, kind), f"lo {low} must be below hi {high}")
    if kind == "int_uniform":
        return IntDistribution(int(low), int(high))
    if kind == "log_uniform" and low <= 0:
        raise InvalidInputError(_loc(path, kind), f"lo {low} must be positive for log_uniform")
    return FloatDistribution(float(low), float(high), log=kind == "log_uniform")


def check_path(path: str) -> list[str | int]:
    """The segments of ``path``; 422 for an empty segment or a reserved field."""
    segments = path.split(".")
    if any(segment == "" for segment in segments):
        raise InvalidInputError(_loc(path), "not a dotted path (an empty segment)")
    if segments[0] in RESERVED_ROOTS:
        raise InvalidInputError(
            _loc(path), f"{segments[0]} is not a hyperparameter; sweep a run config field"
        )
    return [int(segment) if segment.isdigit() else segment for segment in segments]


def distributions(parameters: dict[str, ParameterSpec]) -> dict[str, BaseDistribution]:
    """Every parameter's distribution (paths checked), in the request's order."""
    space: dict[str, BaseDistribution] = {}
    for path, spec in parameters.items():
        check_path(path)
        space[path] = distribution(path, spec)
    paths = sorted(space)
    for shorter, longer in itertools.pairwise(paths):
        if longer.startswith(shorter + "."):
            raise InvalidInputError(_loc(longer), f"inside another parameter, {shorter!r}")
    return space


def grid_values(path: str, dist: BaseDistribution) -> list[Any]:
    """The values a grid sweep tries for one parameter (choices, or every integer)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1))
    raise InvalidInputError(
        _loc(path), "a grid sweeps choice and int_uniform parameters only (a grid has no floats)"
    )


def grid(space: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """The grid search space of Optuna's GridSampler; 422 for a float or a huge grid."""
    values = {path: grid_values(path, dist) for path, dist in space.items()}
    points = 1
    for options in values.values():
        points *= len(options)
    if points > MAX_GRID_POINTS:
        raise InvalidInputError(
            ("body", "parameters"), f"the grid has {points} points; at most {MAX_GRID_POINTS}"
        )
    return values


def corners(space: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Parameter sets that together try every bound and every choice of each parameter."""

    def first(dist: BaseDistribution) -> Any:
        if isinstance(dist, CategoricalDistribution):
            return dist.choices[0]
        return dist.low  # type: ignore[attr-defined]

    base = {path: first(dist) for path, dist in space.items()}
    sets = [base]
    for path, dist in space.items():
        options = (
            list(dist.choices)[1:] if isinstance(dist, CategoricalDistribution) else [dist.high]  # type: ignore[attr-defined]
        )
        sets.extend({**base, path: value} for value in options)
    return sets


def apply(config: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each path set; 422 when a path does not fit the config."""
    result = copy.deepcopy(config)
    for path, value in parameters.items():
        _set(result, path, check_path(path), value)
    return result


def _set(config: dict[str, Any], path: str, segments: list[str | int], value: Any) -> None:
    node: Any = config
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        if isinstance(node, list):
            if not isinstance(segment, int) or segment >= len(node):
                raise InvalidInputError(
                    _loc(path), f"{segment!r} is not an index of the {len(node)}-item list"
                )
        elif isinstance(node, dict):
            segment = str(segment)
            if not last and node.get(segment) is None:
                node[segment] = {}
        else:
            raise InvalidInputError(_loc(path), "the path goes into a value that is not an object")
        if last:
            node[segment] = value
        else:
            node = node[segment]
