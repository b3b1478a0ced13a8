"""The contract between backprop_client and the server: every response model the client
reads (``backprop_client.client.RESPONSE_MODELS``) against the server's ``/openapi.json``.

Each field the client declares must exist in the server's response schema, with a type
the client accepts (a client ``number`` accepts an ``integer``; a client ``X | None``
accepts a nullable field); a field the client requires must be required by the server.
"""

from __future__ import annotations

from typing import Any

import pytest
from backprop_client.client import RESPONSE_MODELS
from backprop_client.models import Run
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.config import Settings
from app.main import create_app

Schema = dict[str, Any]

UNTYPED_BY_THE_SERVER = {
    "GET /v1/runs/{run_id}/history": "a map of equal-length columns whose items it leaves untyped",
}
"""Responses whose values the server's schema leaves untyped (``{}``): only the shape
around them is checked. Each entry is a gap in the server's schema, not in the client."""


class Resolver:
    """Follows ``$ref`` inside one JSON Schema document."""

    def __init__(self, document: Schema) -> None:
        self.document = document

    def __call__(self, schema: Schema) -> Schema:
        while "$ref" in schema:
            node: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            schema = node
        return schema


def alternatives(schema: Schema, resolve: Resolver) -> list[Schema]:
    """The schemas a value may match (``anyOf``/``oneOf`` flattened, refs resolved)."""
    schema = resolve(schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [alt for part in schema[key] for alt in alternatives(part, resolve)]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return alternatives(schema["allOf"][0], resolve)
    return [schema]


def _type(schema: Schema) -> str | None:
    if "type" in schema:
        return str(schema["type"])
    if "const" in schema or "enum" in schema:
        values = schema.get("enum", [schema.get("const")])
        kinds = {type(v).__name__ for v in values}
        return {"str": "string", "int": "integer", "bool": "boolean"}.get(kinds.pop())
    return None  # any value


def accepts(client: Schema, server: Schema, c: Resolver, s: Resolver, where: str) -> list[str]:
    """Problems if a value valid for ``server`` may be rejected by ``client`` (empty: fine)."""
    problems: list[str] = []
    client_options = alternatives(client, c)
    for option in alternatives(server, s):
        failures = [accepts_one(alt, option, c, s, where) for alt in client_options]
        if all(failures):
            problems.extend(min(failures, key=len))
    return problems


def accepts_one(client: Schema, server: Schema, c: Resolver, s: Resolver, where: str) -> list[str]:
    client_type, server_type = _type(client), _type(server)
    if client_type is None:
        return []
    if server_type is None:
        if any(where.startswith(f"{path}.") for path in UNTYPED_BY_THE_SERVER):
            return []
        return [f"{where}: the server may send anything, the client wants {client_type}"]
    if client_type != server_type and (client_type, server_type) != ("number", "integer"):
        return [f"{where}: the server sends {server_type}, the client wants {client_type}"]
    if client_type == "array":
        return accepts(client.get("items", {}), server.get("items", {}), c, s, f"{where}[]")
    if client_type == "object":
        return object_problems(client, server, c, s, where)
    return []


def object_problems(
    client: Schema, server: Schema, c: Resolver, s: Resolver, where: str
) -> list[str]:
    """Every client field must exist in the server's object, compatibly typed."""
    problems: list[str] = []
    fields: dict[str, Schema] = client.get("properties", {})
    server_fields: dict[str, Schema] = server.get("properties", {})
    extra = server.get("additionalProperties", not server_fields)
    for name, schema in fields.items():
        path = f"{where}.{name}"
        if name in server_fields:
            if name in client.get("required", []) and name not in server.get("required", []):
                problems.append(f"{path}: the client requires it, the server may leave it out")
            problems += accepts(schema, server_fields[name], c, s, path)
        elif isinstance(extra, dict):  # a free-form map of extra's values
            problems += accepts(schema, extra, c, s, path)
        elif extra is not True:
            problems.append(f"{path}: the client reads it, the server's schema has no such field")
    if "additionalProperties" in client and isinstance(client["additionalProperties"], dict):
        if isinstance(extra, dict):
            problems += accepts(client["additionalProperties"], extra, c, s, f"{where}.*")
        elif server_fields:
            for name, schema in server_fields.items():
                problems += accepts(client["additionalProperties"], schema, c, s, f"{where}.{name}")
    return problems


def response_schema(spec: Schema, method: str, path: str) -> Schema:
    operation = spec["paths"][path][method.lower()]
    ok = [code for code in operation["responses"] if code.startswith("2")]
    assert len(ok) == 1, f"{method} {path}: success statuses {ok}"
    content = operation["responses"][ok[0]]["content"]
    return dict(content["application/json"]["schema"])


def contract_problems(spec: Schema, method: str, path: str, model: type[BaseModel]) -> list[str]:
    client_schema = model.model_json_schema(ref_template="#/$defs/{model}")
    return accepts(
        client_schema,
        response_schema(spec, method, path),
        Resolver(client_schema),
        Resolver(spec),
        f"{method} {path}",
    )


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Schema:
    """The server's ``/openapi.json`` (the app's lifespan is not needed for it)."""
    database = tmp_path_factory.mktemp("contract") / "backprop.db"
    app = create_app(Settings(database_url=f"sqlite:///{database}"))
    response = TestClient(app).get("/openapi.json")
    assert response.status_code == 200
    document: Schema = response.json()
    return document


@pytest.mark.parametrize(("method", "path"), sorted(RESPONSE_MODELS))
def test_the_client_reads_what_the_server_sends(spec: Schema, method: str, path: str) -> None:
    assert path in spec["paths"] and method.lower() in spec["paths"][path], (
        f"the client calls {method} {path}, which the server does not have"
    )
    assert contract_problems(spec, method, path, RESPONSE_MODELS[(method, path)]) == []


class DriftedRun(Run):
    """A client whose Run reads a field the server does not send, and another wrongly."""

    epoch: str  # type: ignore[assignment]
    learning_curve: list[float]


def test_the_contract_check_sees_a_drifted_model(spec: Schema) -> None:
    problems = contract_problems(spec, "GET", "/v1/runs/{run_id}", DriftedRun)
    assert any("learning_curve" in p and "no such field" in p for p in problems), problems
    assert any(".epoch:" in p and "integer" in p for p in problems), problems
    assert len(problems) == 2, problems


def test_the_contract_check_sees_a_field_the_server_may_leave_out(spec: Schema) -> None:
    class StrictRun(Run):
        pause_requested: bool  # the server documents a default: it may be absent

    problems = contract_problems(spec, "GET", "/v1/runs/{run_id}", StrictRun)
    assert problems == [
        "GET /v1/runs/{run_id}.pause_requested: the client requires it, the server may leave it out"
    ]
