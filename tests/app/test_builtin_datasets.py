"""Built-in datasets: shapes, determinism, shipped data, training, and bad requests."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import engine
from app.datasets.builtin import BUILTIN_NAMES, builtin_dataset

SHAPES = {
    "xor": (4, 2, 2),
    "and": (4, 2, 2),
    "or": (4, 2, 2),
    "moons": (200, 2, 2),
    "circles": (200, 2, 2),
    "spirals": (300, 2, 2),
    "iris": (150, 4, 3),
    "digits": (1797, 64, 10),
}
GENERATED = ("moons", "circles", "spirals")


def create(client: Any, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/datasets", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_each_builtin_has_its_documented_shape(client: Any, name: str) -> None:
    n_samples, n_features, n_classes = SHAPES[name]
    body = create(client, builtin=name)
    assert body["name"] == name
    assert (body["n_samples"], body["n_features"], body["n_targets"]) == (n_samples, n_features, 1)
    assert body["target_type"] == "labels"
    data = client.get(f"/v1/datasets/{body['id']}/data", params={"limit": n_samples}).json()
    X, y = np.asarray(data["X"]), np.asarray(data["y"])
    assert X.shape == (n_samples, n_features) and y.shape == (n_samples,)
    assert sorted(set(y.tolist())) == list(range(n_classes))


def test_truth_tables() -> None:
    for name, labels in {"xor": [0, 1, 1, 0], "and": [0, 0, 0, 1], "or": [0, 1, 1, 1]}.items():
        parsed = builtin_dataset(name)
        assert parsed.X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
        assert parsed.y.tolist() == labels


@pytest.mark.parametrize("name", GENERATED)
def test_generated_data_is_deterministic_per_seed(client: Any, name: str) -> None:
    first = create(client, builtin=name, seed=3)
    again = create(client, builtin=name, seed=3, name="again")
    other = create(client, builtin=name, seed=4)
    assert first["sha256"] == again["sha256"] != other["sha256"]
    assert create(client, builtin=name)["sha256"] == create(client, builtin=name, seed=0)["sha256"]
    sized = create(client, builtin=name, n_samples=51, noise=0.0, seed=3)
    assert sized["n_samples"] == 51
    y = np.asarray(client.get(f"/v1/datasets/{sized['id']}/data").json()["y"])
    assert sorted(np.bincount(y).tolist()) == [25, 26]


def test_noise_moves_the_points() -> None:
    clean = builtin_dataset("moons", noise=0.0)
    noisy = builtin_dataset("moons", noise=0.3)
    assert np.array_equal(clean.y, noisy.y)
    assert 0.1 < float(np.std(noisy.X - clean.X)) < 0.5
    radius = np.hypot(*builtin_dataset("circles", noise=0.0).X.T)
    assert set(np.round(radius, 12).tolist()) == {0.5, 1.0}


def test_shipped_data_equals_scikit_learn() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    for name, loader in (("iris", datasets.load_iris), ("digits", datasets.load_digits)):
        reference = loader()
        parsed = builtin_dataset(name)
        assert np.array_equal(parsed.X, reference.data), name
        assert np.array_equal(parsed.y, reference.target), name


def test_the_runtime_does_not_import_scikit_learn() -> None:
    code = (
        "import sys; from app.datasets.builtin import builtin_dataset as b; "
        "[b(n) for n in ('iris', 'digits', 'moons')]; print('sklearn' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def accuracy_after(name: str, spec: dict[str, Any], config: dict[str, Any]) -> float:
    parsed = builtin_dataset(name)
    network = engine.Network.from_spec(spec)
    result = engine.fit(network, parsed.X, parsed.y, {"loss": "cross_entropy", "seed": 0, **config})
    return float(result.history["accuracy"][-1])


def mlp(n_in: int, hidden: int, n_out: int) -> dict[str, Any]:
    return {
        "input_size": n_in,
        "layers": [
            {"units": hidden, "activation": "tanh"},
            {"units": n_out, "activation": "softmax"},
        ],
        "init": {"scheme": "xavier_uniform", "seed": 0},
    }


@pytest.mark.parametrize(
    ("name", "spec", "config"),
    [
        (
            "moons",
            mlp(2, 16, 2),
            {"epochs": 300, "optimizer": {"name": "adam", "learning_rate": 0.05}},
        ),
        ("xor", mlp(2, 4, 2), {"epochs": 300, "optimizer": {"name": "adam", "learning_rate": 0.1}}),
        (
            "iris",
            mlp(4, 8, 3),
            {"epochs": 300, "optimizer": {"name": "adam", "learning_rate": 0.05}},
        ),
        (
            "digits",
            mlp(64, 32, 10),
            {"epochs": 20, "batch_size": 64, "optimizer": {"name": "adam", "learning_rate": 0.01}},
        ),
    ],
)
def test_builtins_train(name: str, spec: dict[str, Any], config: dict[str, Any]) -> None:
    assert accuracy_after(name, spec, config) > 0.9


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"builtin": "mnist"}, ["body", "builtin"]),
        ({"builtin": 3}, ["body", "builtin"]),
        ({"builtin": "moons", "n_samples": 1}, ["body", "n_samples"]),
        ({"builtin": "moons", "n_samples": 10**9}, ["body", "n_samples"]),
        ({"builtin": "moons", "noise": -0.1}, ["body", "noise"]),
        ({"builtin": "spirals", "seed": -1}, ["body", "seed"]),
        ({"builtin": "moons", "name": ""}, ["body", "name"]),
        ({"builtin": "moons", "X": [[1]]}, ["body", "X"]),
        ({"builtin": "xor", "n_samples": 8}, ["body", "n_samples"]),
        ({"builtin": "iris", "noise": 0.1}, ["body", "noise"]),
        ({"builtin": "digits", "seed": 1}, ["body", "seed"]),
        ({"name": "inline", "X": [[1.0]]}, ["body", "y"]),
    ],
)
def test_bad_builtin_requests_name_the_field(
    client: Any, body: dict[str, Any], loc: list[Any]
) -> None:
    response = client.post("/v1/datasets", json=body)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [loc]
