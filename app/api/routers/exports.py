"""/v1/runs/{run_id}/export: a run's trained model as an ONNX, ``.npz`` or JSON file."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from app.api.deps import ReadSession, Tenant
from app.api.json_out import streamed_response
from app.api.responses import errors
from app.exports import formats as exports
from app.services import artifacts

router = APIRouter(prefix="/v1/runs", tags=["runs"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "The file, with `Content-Disposition: attachment; "
            'filename="<run id>-epoch<n>.<format>"`. '
            "`onnx`: application/octet-stream, an ONNX model (opset 17); "
            "`npz`: application/zip, `np.savez` arrays `layer<i>.weights`, `layer<i>.bias` "
            "and `spec` (UTF-8 JSON as uint8); `json`: application/json."
        ),
        "content": {
            "application/octet-stream": _BINARY,
            "application/zip": _BINARY,
            "application/json": {
                "example": {
                    "format": exports.FORMAT_NAME,
                    "format_version": exports.FORMAT_VERSION,
                    "run_id": "run_…",
                    "network_id": "net_…",
                    "epoch": 2000,
                    "dtype": "float64",
                    "spec": {
                        "input_size": 2,
                        "layers": [{"units": 1, "activation": "sigmoid", "bias": True}],
                        "init": {"scheme": "xavier_uniform", "seed": 7},
                    },
                    "layers": [{"weights": [[4.1], [4.1]], "bias": [-6.3]}],
                }
            },
        },
    },
    **errors(401, 404, 409, 422),
}
EXPORT_RESPONSES[409]["description"] = "The run has no weights yet (queued, or no checkpoint)."
EXPORT_RESPONSES[422]["description"] = "Unknown format."


@router.get(
    "/{run_id}/export",
    response_class=Response,
    responses=EXPORT_RESPONSES,
    summary="Export the run's weights as ONNX, npz or JSON",
)
def export_run(
    run_id: str,
    session: ReadSession,
    tenant: Tenant,
    format: Annotated[exports.ExportFormat, Query(description="onnx, npz or json.")] = "onnx",
) -> Response:
    """The weights ``GET /v1/runs/{run_id}/weights`` serves (final, else the latest
    checkpoint), in the run's dtype, with the network spec, as a downloadable file.

    The ONNX model maps input ``X`` (N, input_size) to output ``Y`` (N, output_size)
    and gives the same outputs as ``POST /v1/runs/{run_id}/predict``.
    """
    model = artifacts.trained_model(session=session, owner=tenant, run_id=run_id)
    session.close()  # nothing more to read: the connection goes back before streaming
    file = exports.export(model, format)
    return streamed_response(
        iter(file.chunks),
        media_type=file.media_type,
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"'},
    )
