# Backprop: one image for the API (`backprop serve`) and the workers (`backprop worker`).
# Dependencies come from uv.lock (uv sync --frozen --no-dev); the app runs as a non-root user.

FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
# The client package (backprop_client, the `backprop` command) is a path dependency.
COPY clients ./clients
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md alembic.ini ./
COPY alembic ./alembic
COPY engine ./engine
COPY app ./app
# UV_COMPILE_BYTECODE compiles the dependencies; our own sources (an editable install)
# too, or every process would compile them at startup (PYTHONDONTWRITEBYTECODE below).
RUN uv sync --frozen --no-dev \
    && /app/.venv/bin/python -m compileall -q app engine alembic clients/python/src

FROM python:3.11-slim-bookworm
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BACKPROP_LOG_FORMAT=json \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1
RUN groupadd --system --gid 10001 backprop \
    && useradd --system --uid 10001 --gid backprop --home-dir /app --no-create-home backprop \
    && mkdir -p /data \
    && chown backprop:backprop /data
COPY --from=build --chown=backprop:backprop /app /app
WORKDIR /data
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["backprop", "serve", "--host", "0.0.0.0", "--port", "8000"]
