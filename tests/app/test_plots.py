"""GET /v1/runs/{id}/plots/loss.png and /plots/decision-boundary.png."""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from tests.conftest import XOR_X, XOR_Y, create_xor, run_body, wait_terminal

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "plots"


def png_size(content: bytes) -> tuple[int, int]:
    """Check the PNG signature and the IHDR chunk (with its CRC); return (width, height)."""
    assert content[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", content[8:16])
    assert kind == b"IHDR" and length == 13
    data = content[16:29]
    (crc,) = struct.unpack(">I", content[29:33])
    assert zlib.crc32(kind + data) == crc
    width, height = struct.unpack(">II", data[:8])
    assert content.endswith(b"IEND\xaeB`\x82")
    return width, height


def pixels(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"), dtype=np.int16)


def plot_area(image: np.ndarray) -> np.ndarray:
    """The middle of the image: inside the axes, away from the title and the labels."""
    height, width, _ = image.shape
    return image[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4]


def get_png(client: Any, path: str, **params: Any) -> bytes:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    content: bytes = response.content
    return content


def save(name: str, content: bytes) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / name).write_bytes(content)


@pytest.fixture
def runs(live_client: Any) -> dict[str, str]:
    """XOR briefly and fully trained (with a validation split), and a 3-class softmax run."""
    network_id, _ = create_xor(live_client)
    data = live_client.post(
        "/v1/datasets", json={"name": "xor16", "X": XOR_X * 4, "y": XOR_Y * 4}
    ).json()
    ids: dict[str, str] = {}
    for name, epochs in (("short", 3), ("long", 600)):
        body = run_body(network_id, data["id"], epochs=epochs, validation={"fraction": 0.25})
        ids[name] = live_client.post("/v1/runs", json=body).json()["id"]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2)) + np.repeat([[0, 2], [-2, -1], [2, -1]], 20, axis=0)
    blobs = live_client.post(
        "/v1/datasets",
        json={"name": "blobs", "X": X.tolist(), "y": np.repeat([0, 1, 2], 20).tolist()},
    ).json()
    softmax = live_client.post(
        "/v1/networks",
        json={
            "name": "blobs",
            "input_size": 2,
            "layers": [{"units": 8, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
            "init": {"seed": 3},
        },
    ).json()
    body = run_body(softmax["id"], blobs["id"], loss="cross_entropy", epochs=200)
    ids["softmax"] = live_client.post("/v1/runs", json=body).json()["id"]
    for run_id in ids.values():
        assert wait_terminal(live_client, run_id)["status"] == "succeeded"
    return ids


def test_plots_are_pngs_of_the_requested_size_that_change_as_the_run_trains(
    live_client: Any, runs: dict[str, str]
) -> None:
    images: dict[str, bytes] = {}
    for name in ("short", "long"):
        run_id = runs[name]
        for plot in ("loss", "decision-boundary"):
            content = get_png(
                live_client, f"/v1/runs/{run_id}/plots/{plot}.png", width=500, height=320
            )
            save(f"{name}-{plot}.png", content)
            assert png_size(content) == (500, 320)
            image = pixels(content)
            assert image.shape == (320, 500, 3)
            # Not a constant image: curves or contours and points, antialiased.
            assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50, (name, plot)
            images[f"{name}-{plot}"] = content
    for plot in ("loss", "decision-boundary"):
        short, long = (plot_area(pixels(images[f"{n}-{plot}"])) for n in ("short", "long"))
        changed = np.any(short != long, axis=2).mean()
        assert changed > 0.02, (plot, changed)

    # The default size, odd sizes and the bounds are honoured exactly.
    long_id = runs["long"]
    linear = get_png(live_client, f"/v1/runs/{long_id}/plots/loss.png")
    assert png_size(linear) == (640, 480)
    boundary = get_png(
        live_client, f"/v1/runs/{long_id}/plots/decision-boundary.png", width=333, height=257
    )
    assert png_size(boundary) == (333, 257)
    content = get_png(live_client, f"/v1/runs/{long_id}/plots/loss.png", width=160, height=2400)
    assert png_size(content) == (160, 2400)

    # A log axis draws the same curve differently.
    log = get_png(live_client, f"/v1/runs/{long_id}/plots/loss.png", log="true")
    save("long-loss-log.png", log)
    assert png_size(log) == (640, 480)
    assert np.any(plot_area(pixels(log)) != plot_area(pixels(linear)))

    # Several outputs: the predicted class as regions, points colored by class.
    content = get_png(live_client, f"/v1/runs/{runs['softmax']}/plots/decision-boundary.png")
    save("softmax-decision-boundary.png", content)
    area = plot_area(pixels(content)).reshape(-1, 3)
    assert len(np.unique(area, axis=0)) >= 3

    # Concurrent renders (each on its own Figure) equal sequential ones byte for byte.
    expected = {
        f"/v1/runs/{runs['long']}/plots/loss.png": linear,
        f"/v1/runs/{runs['short']}/plots/decision-boundary.png": get_png(
            live_client, f"/v1/runs/{runs['short']}/plots/decision-boundary.png"
        ),
    }
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda path: (path, get_png(live_client, path)), [*expected] * 3))
    for path, rendered in results:
        assert rendered == expected[path], path


def test_plot_errors(client: Any) -> None:
    for plot in ("loss", "decision-boundary"):
        response = client.get(f"/v1/runs/run_nope/plots/{plot}.png")
        assert response.status_code == 404 and "run_nope" in response.json()["detail"]

    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    response = client.get(f"/v1/runs/{run_id}/plots/loss.png")
    assert response.status_code == 409 and "no history" in response.json()["detail"]
    response = client.get(f"/v1/runs/{run_id}/plots/decision-boundary.png")
    assert response.status_code == 409 and "no weights" in response.json()["detail"]

    for params in (
        {"width": 159},
        {"width": 2401},
        {"height": 0},
        {"height": "big"},
        {"log": "maybe"},
    ):
        response = client.get(f"/v1/runs/{run_id}/plots/loss.png", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]
    response = client.get(f"/v1/runs/{run_id}/plots/decision-boundary.png", params={"width": 5})
    assert response.status_code == 422

    # Three features: no plane to draw on (422 even before the run has weights).
    network = client.post(
        "/v1/networks",
        json={"name": "three", "input_size": 3, "layers": [{"units": 1, "activation": "sigmoid"}]},
    ).json()
    data = client.post(
        "/v1/datasets", json={"name": "three", "X": [[0, 0, 1], [1, 1, 0]], "y": [[0], [1]]}
    ).json()
    three = client.post("/v1/runs", json=run_body(network["id"], data["id"])).json()["id"]
    response = client.get(f"/v1/runs/{three}/plots/decision-boundary.png")
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["path", "run_id"] and "has 3" in detail["msg"]

    # The run's dataset is gone (a cancelled run keeps its weights, not its data). Since
    # issue 13 a used dataset is only deleted with its runs (409 otherwise), so this is a
    # run whose dataset was deleted before: its dataset_id is null.
    client.post(f"/v1/runs/{run_id}/cancel")
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 409
    with client.app.state.db.writer.begin() as conn:
        conn.execute(text("UPDATE run SET dataset_id = NULL WHERE id = :id"), {"id": run_id})
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    response = client.get(f"/v1/runs/{run_id}/plots/decision-boundary.png")
    assert response.status_code == 409 and "deleted" in response.json()["detail"]


def test_plots_are_documented_as_png(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for plot in ("loss", "decision-boundary"):
        operation = paths[f"/v1/runs/{{run_id}}/plots/{plot}.png"]["get"]
        assert list(operation["responses"]["200"]["content"]) == ["image/png"]
        assert {"404", "409", "422"} <= set(operation["responses"])
        assert operation["description"]
        names = {parameter["name"] for parameter in operation["parameters"]}
        assert {"run_id", "width", "height"} <= names
