"""The HTTP API: routers, request dependencies, schemas, presenters and responses."""
