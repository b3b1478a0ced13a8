"""OpenAPI documentation of JSON bodies that a route reads itself.

A route that streams its body (:func:`app.api.request_files.parse_body`) declares no
body parameter, so FastAPI would document none. ``openapi_extra=json_body(Model,
examples)`` documents the body exactly as a ``Model`` parameter would
(``$ref`` to ``#/components/schemas/Model``, required, with the examples), and
:func:`install` adds the models' schemas to the components; the docs page and the
schema-driven fuzz test see the same document as before.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

REF_TEMPLATE = "#/components/schemas/{model}"
_MODELS: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``openapi_extra`` of a route whose JSON body ``model`` describes."""
    _MODELS[model.__name__] = model
    content: dict[str, Any] = {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}
    if examples:
        content["examples"] = examples
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def _documenting_route(model: type[BaseModel]) -> APIRoute:
    """A route with a ``model`` body parameter, never served: FastAPI's own schema
    generation of it gives exactly the components the parameter would have."""

    def endpoint(body: Any) -> None:  # pragma: no cover - never called
        del body

    parameter = inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=model)
    endpoint.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
    return APIRoute(f"/{model.__name__}", endpoint, methods=["POST"])


def _add_schemas(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    routes = [_documenting_route(model) for model in _MODELS.values()]
    generated = get_openapi(title="", version="", routes=routes)
    for name, schema in generated.get("components", {}).get("schemas", {}).items():
        schemas.setdefault(name, schema)
    document["components"]["schemas"] = dict(sorted(schemas.items()))


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the schemas of every :func:`json_body` model."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _add_schemas(generate())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
