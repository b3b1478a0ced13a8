"""Error responses and links as documented in the OpenAPI schema.

Every route lists the error statuses it can answer, with their bodies, so that
clients (and schemathesis) can rely on the schema: nothing undocumented comes
back. Bodies are FastAPI's shape: ``{"detail": "reason"}``, or for 422 a list
of ``{"loc", "msg", "type"}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorMessage(BaseModel):
    """An error with a human-readable reason."""

    detail: str


class ValidationIssue(BaseModel):
    """One invalid field: where it is and why."""

    loc: list[str | int] = Field(description='Where, e.g. ["body", "layers", 0, "units"].')
    msg: str
    type: str | None = None


class ValidationErrorBody(BaseModel):
    """Invalid input (422): every problem found, each naming its field."""

    detail: list[ValidationIssue]


_DESCRIPTIONS = {
    400: "Malformed request (e.g. an unreadable multipart body).",
    401: "Missing or invalid bearer token (only when BACKPROP_API_KEYS is set).",
    404: "Unknown id, or one that belongs to another tenant.",
    409: "The resource's state does not allow this now.",
    413: "Request body over BACKPROP_MAX_BODY_BYTES.",
    422: "Invalid input; each entry names the field and the reason.",
    429: "Too many queued or running runs for this tenant; retry after Retry-After seconds.",
    507: "Storing this would take the tenant over BACKPROP_STORAGE_QUOTA_BYTES; the detail "
    "gives the figures (used, needed, quota).",
    503: "The database is unavailable (unreachable, read-only, full or busy); "
    "retry after Retry-After seconds.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of a route for the error statuses ``codes``."""
    documented: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS[code],
            "model": ValidationErrorBody if code == 422 else ErrorMessage,
        }
        if code == 401:
            entry["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}
            }
        if code in (429, 503):
            entry["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}
            }
        documented[code] = entry
    return documented


def run_links() -> dict[str, Any]:
    """OpenAPI links from a response carrying a run ``id`` to the run's operations."""
    run_id = {"run_id": "$response.body#/id"}
    return {
        "GetRun": {"operationId": "get_run_v1_runs__run_id__get", "parameters": run_id},
        "CancelRun": {
            "operationId": "cancel_run_v1_runs__run_id__cancel_post",
            "parameters": run_id,
        },
        "Predict": {"operationId": "predict_v1_runs__run_id__predict_post", "parameters": run_id},
        "GetHistory": {
            "operationId": "get_history_v1_runs__run_id__history_get",
            "parameters": run_id,
        },
        "GetWeights": {
            "operationId": "get_weights_v1_runs__run_id__weights_get",
            "parameters": run_id,
        },
        "ListCheckpoints": {
            "operationId": "list_checkpoints_v1_runs__run_id__checkpoints_get",
            "parameters": run_id,
        },
    }


def resource_links(kind: str, operations: dict[str, str]) -> dict[str, Any]:
    """OpenAPI links from a created ``kind`` (its ``id``) to ``operations`` (name → operationId)."""
    parameters = {f"{kind}_id": "$response.body#/id"}
    return {
        name: {"operationId": operation_id, "parameters": parameters}
        for name, operation_id in operations.items()
    }
