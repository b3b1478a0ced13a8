"""Bearer authentication on every /v1 operation, the docs' Authorize button, CORS."""

from __future__ import annotations

import re
from typing import Any

from app.api.deps import key_digest, tenant_id
from app.config import Settings
from app.main import create_app

KEY = "alpha-key-0123456789"
ORIGIN = "https://notebook.example"


def _operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, operations in schema["paths"].items()
        for method in operations
        if path.startswith("/v1/")
    ]


def test_every_v1_operation_needs_a_valid_bearer_token(make_client: Any) -> None:
    with make_client(api_keys=f"{KEY},beta-key-9876543210") as client:
        schema = client.get("/openapi.json").json()
        operations = _operations(schema)
        assert len(operations) >= 20
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Bearer {KEY}x"},
            {"Authorization": f"Basic {KEY}"},
            {"Authorization": KEY},
        ):
            for method, path in operations:
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                assert KEY not in response.text
        good = client.get("/v1/networks", headers={"Authorization": f"Bearer {KEY}"})
        assert good.status_code == 200
        for open_path in ("/healthz", "/docs", "/redoc", "/openapi.json"):
            assert client.get(open_path).status_code == 200, open_path


def test_docs_authorize_button_uses_the_bearer_scheme(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["HTTPBearer"]["description"],
        }
    }
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            secured = operation.get("security") == [{"HTTPBearer": []}]
            assert secured == path.startswith("/v1/"), path


def test_tenant_ids_are_keyed_hashes_never_the_key() -> None:
    owner = tenant_id(key_digest(KEY))
    assert KEY not in owner and len(owner) <= 64
    assert owner == tenant_id(key_digest(KEY)) != tenant_id(key_digest(KEY + "x"))


def test_cors_is_off_by_default(client: Any) -> None:
    preflight = client.options(
        "/v1/networks",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = client.get("/v1/networks", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_the_configured_origins(make_client: Any) -> None:
    with make_client(cors_origins=f"{ORIGIN}, https://other.example", api_keys=KEY) as client:
        preflight = client.options(
            "/v1/runs",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        # Answers, including 401s, carry the header so the browser shows them to the page.
        for headers, status in (({}, 401), ({"Authorization": f"Bearer {KEY}"}, 200)):
            response = client.get("/v1/networks", headers={"Origin": ORIGIN, **headers})
            assert response.status_code == status
            assert response.headers["access-control-allow-origin"] == ORIGIN
        stranger = client.get("/v1/networks", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers
        refused = client.options(
            "/v1/runs",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400


def test_settings_parse_cors_origins() -> None:
    settings = Settings(cors_origins=" https://a.example ,https://b.example,", workers=0)
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"]
    assert Settings(workers=0).cors_origin_list == []
    assert create_app(Settings(workers=0)) is not None


def test_security_headers_on_pages_answers_and_server_errors(settings_for: Any) -> None:
    from fastapi.testclient import TestClient

    app = create_app(settings_for())

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/", "/docs", "/v1/networks", "/v1/networks/net_x", "/boom", "/static/x"):
            response = client.get(path)
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["x-frame-options"] == "DENY", path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path
        assert response.status_code == 404
        assert client.get("/boom").status_code == 500
        page = client.get("/").headers["content-security-policy"]
        assert "default-src 'none'" in page and "script-src 'self'" in page
        assert "unsafe-inline" not in page and "unsafe-eval" not in page


def test_a_single_valued_query_parameter_given_twice_is_a_422(client: Any) -> None:
    twice = client.get("/v1/runs?status=queued&status=running")
    assert twice.status_code == 422
    assert twice.json()["detail"][0]["loc"] == ["query", "status"]
    assert "more than once" in twice.json()["detail"][0]["msg"]
    # A list parameter repeats: every tag must match.
    assert client.get("/v1/runs?tag=a&tag=b").status_code == 200
