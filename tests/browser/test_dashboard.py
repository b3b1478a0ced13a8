"""The dashboard in Debian's chromium, offline, with an API key: a run started by
the test appears, its live chart gains points while it trains, Pause and Resume
on the page pause and resume it, and Cancel cancels it; the Datasets view lists an uploaded CSV, previews its rows page by
page and shows its stats. Screenshots go to
test-output/browser/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.browser.test_docs_page import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CSP_VIOLATIONS,
    OUTPUT_DIR,
    csp_violations,
    keep_local,
)
from tests.browser.test_docs_page import require_chromium as require_chromium
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.browser

KEY = "dashboard-key"
ENV = {"BACKPROP_API_KEYS": KEY, "BACKPROP_WORKERS": "1", "BACKPROP_FLUSH_SECONDS": "0.1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("dashboard-browser"), ENV) as started:
        yield started


def _start_run(client: httpx.Client) -> str:
    network = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}).json()
    body = {
        "network_id": network,
        "dataset_id": dataset["id"],
        "loss": "mse",
        "optimizer": {"name": "sgd", "learning_rate": 0.5, "momentum": 0.9},
        "epochs": 5_000_000,
        "history_every": 500,
        "seed": 1,
    }
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def test_dashboard_shows_a_live_run_and_cancels_it(server: ServerProcess) -> None:
    require_chromium()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        run_id = _start_run(client)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.route("**/*", lambda route: keep_local(route, server.url, outside))
                page.add_init_script(CSP_VIOLATIONS)
                loaded = page.goto(server.url + "/")
                assert loaded is not None
                policy = loaded.headers["content-security-policy"]
                assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
                page.fill("#api-key", KEY)
                page.click("#key-form button[type=submit]")
                row = page.locator(f'#runs tbody tr[data-run-id="{run_id}"]')
                row.wait_for(timeout=30_000)
                row.click()
                chart = page.locator("#chart")
                page.wait_for_function(
                    "() => document.querySelector('#chart').dataset.points > 2", timeout=60_000
                )
                first = int(chart.get_attribute("data-points") or 0)
                time.sleep(1.5)
                page.wait_for_function(
                    f"() => document.querySelector('#chart').dataset.points > {first}",
                    timeout=30_000,
                )
                # Read both in one go: another event may be drawn between two reads.
                second, drawn = page.eval_on_selector(
                    "#chart",
                    "e => [Number(e.dataset.points), e.querySelector('.loss').points.length]",
                )
                assert second > first
                assert drawn == second
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-training.png"))
                assert page.locator("#run-status").inner_text() == "running"

                page.click("#pause")
                page.wait_for_function(
                    "() => document.querySelector('#run-status').textContent === 'paused'",
                    timeout=30_000,
                )
                assert client.get(f"/v1/runs/{run_id}").json()["status"] == "paused"
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-paused.png"))
                page.wait_for_selector("#resume:not([disabled])", timeout=10_000)
                page.click("#resume")
                page.wait_for_function(
                    "() => document.querySelector('#run-status').textContent === 'running'",
                    timeout=30_000,
                )
                resumed = int(chart.get_attribute("data-points") or 0)
                page.wait_for_function(
                    f"() => document.querySelector('#chart').dataset.points > {resumed}",
                    timeout=30_000,
                )

                page.click("#cancel")
                page.wait_for_function(
                    "() => document.querySelector('#run-status').textContent === 'cancelled'",
                    timeout=30_000,
                )
                assert client.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"
                page.wait_for_function(
                    "() => document.querySelector('#stream-state').textContent === '(ended)'",
                    timeout=30_000,
                )
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-cancelled.png"))
                # The page did everything above within its tight policy.
                assert csp_violations(page) == []
            finally:
                browser.close()
    assert outside == [], f"the dashboard sent requests to other hosts: {outside}"


def test_dashboard_draws_the_lr_column_of_a_scheduled_run(server: ServerProcess) -> None:
    require_chromium()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        network = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
        dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}).json()
        body = {
            "network_id": network,
            "dataset_id": dataset["id"],
            "loss": "mse",
            "optimizer": {"name": "sgd", "learning_rate": 0.5},
            "lr_schedule": {"name": "exponential", "gamma": 0.99},
            "epochs": 400,
            "history_every": 20,
            "seed": 1,
        }
        run_id = client.post("/v1/runs", json=body).json()["id"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.route("**/*", lambda route: keep_local(route, server.url, outside))
                page.goto(server.url + "/")
                page.fill("#api-key", KEY)
                page.click("#key-form button[type=submit]")
                row = page.locator(f'#runs tbody tr[data-run-id="{run_id}"]')
                row.wait_for(timeout=30_000)
                row.click()
                page.wait_for_function(
                    "() => document.querySelector('#chart').dataset.lrPoints >= 20", timeout=60_000
                )
                drawn = page.eval_on_selector("#chart", "e => e.querySelector('.lr').points.length")
                assert drawn >= 20
                assert page.locator("#lr-legend").is_visible()
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-lr.png"))
            finally:
                browser.close()
    assert outside == [], f"the dashboard sent requests to other hosts: {outside}"


# 25 rows (so the 20-row preview has a second page) with known moments and a text target.
SPECIES = ("setosa", "versicolor", "virginica")
DATASET_ROWS = [(i, 2 * i + 1, i / 3, SPECIES[i % 3]) for i in range(25)]
HOSTILE_NAME = '<img src=x id="injected">'


def _dataset_csv() -> bytes:
    lines = ["a,<b>b</b>,c,species", *(f"{a},{b},{c!r},{s}" for a, b, c, s in DATASET_ROWS)]
    return ("\n".join(lines) + "\n").encode()


def _cells(page: Page, selector: str) -> list[list[str]]:
    rows: list[list[str]] = page.eval_on_selector_all(
        selector, "rows => rows.map(r => Array.from(r.children, c => c.textContent))"
    )
    return rows


def _wait_loaded(page: Page, offset: int) -> None:
    page.wait_for_function(
        "() => document.querySelector('#preview').dataset.loaded === 'true' && "
        f"document.querySelector('#preview').dataset.offset === '{offset}' && "
        "document.querySelector('#stats').dataset.loaded === 'true'",
        timeout=30_000,
    )


def _expected_preview(start: int, stop: int) -> list[list[str]]:
    """Rows as the preview shows them: index, features (6 significant digits), the class
    *name* of the label."""
    return [
        [str(i), str(a), str(b), f"{c:.6g}", s]
        for i, (a, b, c, s) in enumerate(DATASET_ROWS[start:stop], start=start)
    ]


def test_dashboard_datasets_view_previews_pages_and_shows_stats(server: ServerProcess) -> None:
    require_chromium()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        response = client.post(
            "/v1/datasets/csv",
            files={"file": ("known.csv", _dataset_csv(), "text/csv")},
            data={"target": "species", "name": HOSTILE_NAME},
        )
        assert response.status_code == 201, response.text
        dataset = response.json()
        assert sorted(dataset["classes"]) == sorted(SPECIES)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.route("**/*", lambda route: keep_local(route, server.url, outside))
                page.add_init_script(CSP_VIOLATIONS)
                page.goto(server.url + "/")
                # Without a key the view says why it is empty; saving the key reloads it.
                page.click("#view-datasets")
                assert page.locator("#runs-view").is_hidden()
                page.wait_for_function(
                    "() => document.querySelector('#datasets-error').textContent.startsWith('401')",
                    timeout=30_000,
                )
                assert page.locator("#datasets tbody tr").count() == 0
                page.fill("#api-key", KEY)
                page.click("#key-form button[type=submit]")
                row = page.locator(f'#datasets tbody tr[data-dataset-id="{dataset["id"]}"]')
                row.wait_for(timeout=30_000)
                assert page.locator("#datasets-error").text_content() == ""
                # The list row: the name as text (never markup), rows x features.
                listed = row.locator("td")
                assert listed.nth(0).text_content() == HOSTILE_NAME
                assert listed.nth(1).text_content() == "25 \u00d7 3"
                assert listed.nth(2).text_content() == "3 classes"
                row.click()
                _wait_loaded(page, 0)
                assert page.locator("#dataset-name").text_content() == HOSTILE_NAME
                assert page.locator("#injected").count() == 0

                heads = page.eval_on_selector_all(
                    "#preview thead th", "cells => cells.map(c => c.textContent)"
                )
                assert heads == ["#", "a", "<b>b</b>", "c", "species"]
                classes: list[str] = dataset["classes"]
                assert _cells(page, "#preview tbody tr") == _expected_preview(0, 20)
                assert page.locator("#preview-prev").is_disabled()
                assert page.locator("#preview-range").text_content() == "rows 0\u201319 of 25"
                page.screenshot(path=str(OUTPUT_DIR / "dashboard-dataset.png"), full_page=True)

                page.click("#preview-next")
                _wait_loaded(page, 20)
                assert _cells(page, "#preview tbody tr") == _expected_preview(20, 25)
                assert page.locator("#preview-next").is_disabled()
                assert page.locator("#preview-range").text_content() == "rows 20\u201324 of 25"
                page.click("#preview-prev")
                _wait_loaded(page, 0)
                assert _cells(page, "#preview tbody tr") == _expected_preview(0, 20)

                _assert_stats(page, classes)
                page.screenshot(
                    path=str(OUTPUT_DIR / "dashboard-dataset-stats.png"), full_page=True
                )
                assert csp_violations(page) == []
            finally:
                browser.close()
    assert outside == [], f"the dashboard sent requests to other hosts: {outside}"


def _assert_stats(page: Page, classes: list[str]) -> None:
    stats = {row[0]: row for row in _cells(page, "#stats tbody tr")}
    assert set(stats) == {"a", "<b>b</b>", "c", "species"}
    columns = np.array([r[:3] for r in DATASET_ROWS], dtype=float)
    for name, column in zip(("a", "<b>b</b>", "c"), columns.T, strict=True):
        shown = stats[name]
        assert shown[1:4] == ["feature", "25", "0"]
        expected = [column.min(), column.max(), column.mean(), column.std()]
        assert [float(v) for v in shown[4:]] == pytest.approx(expected, rel=1e-5)
    labels = np.array([classes.index(r[3]) for r in DATASET_ROWS], dtype=float)
    shown = stats["species"]
    assert shown[1:4] == ["target", "25", "0"]
    expected = [labels.min(), labels.max(), labels.mean(), labels.std()]
    assert [float(v) for v in shown[4:]] == pytest.approx(expected, rel=1e-5)
    assert page.locator("#class-counts-block").is_visible()
    counts = dict(_cells(page, "#class-counts tbody tr"))
    assert counts == {s: str(sum(r[3] == s for r in DATASET_ROWS)) for s in SPECIES}
