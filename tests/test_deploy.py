"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

``make deploy-check`` validates both files (compose spec schema, hadolint); these
tests check what they mean, and that the integration test of scale-out
(tests/integration/test_scale_out.py) runs what compose runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from app.config import Settings
from tests.support import compose

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("api", "worker", "postgres", "redis")


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, duration
    value, unit = int(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


def test_compose_services_commands_and_environment() -> None:
    services = compose.compose()["services"]
    assert set(services) == set(SERVICES)
    assert compose.service_command("api") == [
        "backprop",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert compose.service_command("worker") == ["backprop", "worker", "--concurrency", "1"]
    for name in ("api", "worker"):
        environment = compose.service_environment(name)
        assert set(environment) == {
            "BACKPROP_DATABASE_URL",
            "BACKPROP_BROKER_URL",
            "BACKPROP_LOG_FORMAT",
        }
        database = urlsplit(environment["BACKPROP_DATABASE_URL"])
        assert database.scheme == "postgresql+psycopg" and database.hostname == "postgres"
        broker = urlsplit(environment["BACKPROP_BROKER_URL"])
        assert broker.scheme == "redis" and broker.hostname == "redis"
        assert environment["BACKPROP_LOG_FORMAT"] == "json"
        Settings(**{key.removeprefix("BACKPROP_").lower(): v for key, v in environment.items()})
    assert compose.service_environment("api") == compose.service_environment("worker")
    assert services["api"]["ports"] == ["8000:8000"]
    assert services["worker"]["deploy"]["replicas"] == 2


def test_the_integration_test_runs_what_compose_runs(tmp_path: Path) -> None:
    stack = compose.Stack(
        tmp_path,
        database_url="postgresql+psycopg://u@127.0.0.1:5999/db",
        broker_url="redis://127.0.0.1:6999/3",
        tuning={"BACKPROP_LEASE_SECONDS": 3},
    )
    api_argv = compose.service_command("api")
    assert stack.api.argv == [
        *api_argv[:3],
        "127.0.0.1",  # --host: loopback instead of all interfaces
        api_argv[4],
        str(stack.port),  # --port: a free one instead of 8000
    ]
    assert all(worker.argv == compose.service_command("worker") for worker in stack.workers)
    assert len(stack.workers) == compose.service("worker")["deploy"]["replicas"]
    for process, name in [(stack.api, "api"), *[(w, "worker") for w in stack.workers]]:
        expected = compose.service_environment(name)
        differs = {key for key in expected if process.env.get(key) != expected[key]}
        assert differs == set(compose.ADDRESS_KEYS)  # only the service addresses change
        added = set(process.env) - set(expected)
        assert added <= compose.TUNING_KEYS  # plus timings, nothing that changes behaviour


def test_compose_health_dependencies_and_volumes() -> None:
    services = compose.compose()["services"]
    for name in ("api", "worker"):
        for dependency in ("postgres", "redis"):
            assert services[name]["depends_on"][dependency]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert "postgres-data" in compose.compose()["volumes"]
    # Warm shutdown checkpoints and hands runs back: allow more than a checkpoint interval.
    defaults = Settings()
    grace = _seconds(services["worker"]["stop_grace_period"])
    assert grace > defaults.auto_checkpoint_seconds and grace > defaults.lease_seconds


def test_dockerfile_uses_the_lock_file_a_non_root_user_and_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert froms and all(image.startswith("python:3.11-slim") for image in froms)
    assert "uv sync --frozen --no-dev" in text and "COPY pyproject.toml uv.lock" in text
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*healthz", text, flags=re.MULTILINE)
    assert 'CMD ["backprop", "serve", "--host", "0.0.0.0", "--port", "8000"]' in text
    assert "BACKPROP_LOG_FORMAT=json" in text
