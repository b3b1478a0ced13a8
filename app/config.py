"""Service configuration, read from ``BACKPROP_*`` environment variables.

Settings are never created at import time: call :func:`get_settings` (cached) or
build a :class:`Settings` explicitly and hand it to :func:`app.main.create_app`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LARGE_BODY_BYTES = 1024 * 1024 * 1024
"""BACKPROP_LARGE_DATASETS: bodies up to 1 GiB (60,000 x 785 float64 .npy is 377 MB)."""
LARGE_DATASET_CELLS = 64_000_000
"""BACKPROP_LARGE_DATASETS: 60,000 x (784 + 1) is 47.1M values."""


def _default_workers() -> int:
    return os.cpu_count() or 1


class Settings(BaseSettings):
    """All runtime configuration of the service.

    The four contract variables are ``BACKPROP_DATABASE_URL``,
    ``BACKPROP_BROKER_URL``, ``BACKPROP_WORKERS`` and ``BACKPROP_API_KEYS``; the
    others tune the executor and rarely need changing.
    """

    model_config = SettingsConfigDict(env_prefix="BACKPROP_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./backprop.db", description="SQLAlchemy URL of the database."
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker URL; unset runs the local process pool."
    )
    workers: int = Field(
        default_factory=_default_workers,
        ge=0,
        description="Size of the local worker pool (0 = accept runs but never execute them).",
    )
    api_keys: str | None = Field(
        default=None, description="Comma-separated bearer tokens; unset leaves the API open."
    )
    lease_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a worker's claim on a run lives without renewal; a dead "
        "worker's run is taken over after at most this long.",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="Workers of one run that may die while their supervisor lives before "
        "it fails with worker_lost (a crash of the whole service does not count).",
    )
    outage_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long a worker whose run ended keeps retrying to write the outcome "
        "while the database is unavailable; after that it gives the run up, and the run "
        "resumes from its last stored checkpoint once the database is back.",
    )
    flush_seconds: float = Field(
        default=0.5, gt=0, description="Interval between batched progress/history writes."
    )
    auto_checkpoint_seconds: float = Field(
        default=5.0, gt=0, description="Checkpoint interval when a run sets checkpoint_every=null."
    )
    keep_auto_checkpoints: int = Field(
        default=3, ge=1, description="Automatic checkpoints kept per run (the latest ones)."
    )
    poll_seconds: float = Field(
        default=1.0, gt=0, description="Idle workers look for queued runs at least this often."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text or as one JSON object per line."
    )
    broker_visibility_timeout: float = Field(
        default=3600.0,
        gt=0,
        description="Redis transport: seconds before an unacknowledged Celery message is "
        "delivered again (the run's lease makes a duplicate delivery drop itself).",
    )
    broker_restore_interval: float = Field(
        default=2.0,
        gt=0,
        description="Redis transport: how often workers look for messages to restore.",
    )
    schema_wait_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long `backprop worker` waits for `backprop serve`/`migrate` to "
        "bring the database schema to the latest revision.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Largest accepted request body (413 above)."
    )
    max_dataset_cells: int = Field(
        default=10_000_000,
        ge=1,
        description="Largest dataset, n_samples x (n_features + n_targets) values (422 above).",
    )
    max_network_parameters: int = Field(
        default=10_000_000, ge=1, description="Largest network, in weights and biases (422 above)."
    )
    max_run_work: int = Field(
        default=10_000_000_000,
        ge=1,
        description="Largest run, epochs x training samples (422 above).",
    )
    max_predict_rows: int = Field(
        default=100_000, ge=1, description="Most rows in one predict request (422 above)."
    )
    max_history_points: int = Field(
        default=100_000,
        ge=1,
        description="Most points in one history response (its limit and max_points; 422 above).",
    )
    max_active_runs: int = Field(
        default=100,
        ge=1,
        description="Queued plus running runs per tenant; creating or resuming one more answers 429.",
    )
    cors_origins: str | None = Field(
        default=None,
        description="Comma-separated origins allowed by CORS; unset = CORS off.",
    )
    # Package B — bounded event streams (GET /v1/runs/{id}/events).
    max_event_streams: int = Field(
        default=100,
        ge=1,
        description="Open event streams per tenant per API process; one more answers 429.",
    )
    event_buffer_points: int = Field(
        default=2000,
        ge=1,
        description="Newest progress points an API process keeps per watched run, shared by "
        "its subscribers; a subscriber that falls further behind gets a thinned sample.",
    )
    event_batch_points: int = Field(
        default=500,
        ge=1,
        description="Most progress events a live subscriber is sent per poll (0.5 s); when "
        "more were recorded, an evenly spaced sample with the latest, after a `skipped` event.",
    )
    event_send_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="An event stream whose client takes no data for this long is closed.",
    )
    # Package D (large payloads): memory of one request's predict/plot/export work.
    max_request_memory: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of outputs one evaluate request may hold (its pre-activations "
        "and activations of every row); more is refused with 422. Predict and plots need "
        "no budget: they run in blocks of at most 4 MiB of activations.",
    )
    server_blas_threads: int = Field(
        default=1,
        ge=1,
        description="BLAS threads of backprop serve's own compute (predict, evaluate, "
        "plots, exports): the other cores stay free for its event loop and other "
        "requests. Training runs in the workers, which use every core.",
    )
    # -- package G: fair queue, cheap run creation, storage quotas (issue 10) ---------------
    storage_quota_bytes: int = Field(
        default=10 * 1024**3,
        ge=0,
        description="Most bytes one tenant may store: dataset arrays, run histories, "
        "checkpoints and run weights (507 above). Unfinished runs are charged the most they "
        "can store, finished ones what they stored. 0 = no quota.",
    )
    history_max_points: int = Field(
        default=100_000,
        ge=10,
        description="Runs record their history at history_every for this many points, then "
        "at doubling intervals (engine.history_points gives the bound); a run may ask for "
        "fewer (history_max_points), not more.",
    )
    max_scheduled_checkpoints: int = Field(
        default=1000,
        ge=1,
        description="Most checkpoints one run's checkpoint_every schedule may write "
        "(epochs // checkpoint_every; 422 above).",
    )
    # Package A (the HTTP edge): slow clients, shutdown.
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="The whole request head (request line and headers) must arrive within "
        "this long, counted from the connection's start or from the end of the previous "
        "response on a keep-alive connection; else 408 and the connection is closed. "
        "Lengthened by 0-10% per connection, so connections opened together time out apart.",
    )
    body_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A request body that sends no byte for this long answers 408 and the "
        "connection is closed (lengthened by 0-10% per connection, like the header "
        "timeout). It is also the grace period of the minimum body rate.",
    )
    body_min_bytes_per_second: float = Field(
        default=8192.0,
        gt=0,
        description="A request body must arrive within BACKPROP_BODY_TIMEOUT_SECONDS plus "
        "one second per this many bytes received (408 otherwise), so a trickle cannot hold "
        "a connection for long.",
    )
    large_datasets: bool = Field(
        default=False,
        description="Raise the limits that stop MNIST-sized data (60,000 x 784): "
        f"BACKPROP_MAX_BODY_BYTES to at least {LARGE_BODY_BYTES // 2**20} MiB and "
        f"BACKPROP_MAX_DATASET_CELLS to at least {LARGE_DATASET_CELLS:,} values (either "
        "set explicitly and higher wins). Upload such data as .npy or Parquet "
        "(POST /v1/datasets/file); JSON of that size is slow and memory-hungry.",
    )
    dataset_cache_bytes: int = Field(
        default=1024 * 1024 * 1024,
        ge=0,
        description="Each worker process keeps the most recently used decoded datasets "
        "(keyed by their sha256) up to this many bytes, so a sweep of runs on one dataset "
        "decodes it once per worker (0 = no cache).",
    )
    shutdown_seconds: int = Field(
        default=10,
        ge=1,
        description="On SIGTERM, how long `backprop serve` waits for open requests and "
        "streams to finish before it closes them.",
    )

    idempotency_ttl_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="How long a POST's Idempotency-Key is remembered: within it, the same key "
        "with the same request replays the first response.",
    )
    idempotency_lock_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a request holding an Idempotency-Key keeps it: a repeat in that "
        "time is answered 409; after it (the first request's server died) the key is taken "
        "over.",
    )
    idempotency_max_response_bytes: int = Field(
        default=256 * 1024,
        ge=0,
        description="Largest response stored for an Idempotency-Key replay; a larger one is "
        "not stored (the key is released, so a retry runs the request again).",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Allow notify_url targets on loopback, private, link-local (cloud "
        "metadata) and other non-public addresses. Off: such URLs are refused with a 422.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one webhook delivery (connect and read)."
    )
    webhook_retry_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="How long a failing webhook is retried (exponential backoff) before the "
        "notification is given up as failed.",
    )
    webhook_backoff_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Wait before the first webhook retry; each further retry doubles it "
        "(capped at BACKPROP_WEBHOOK_BACKOFF_MAX_SECONDS).",
    )
    webhook_backoff_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest wait between two webhook attempts."
    )
    webhook_poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the API server looks for due webhooks."
    )
    webhook_concurrency: int = Field(
        default=4, ge=1, le=64, description="Webhook deliveries in flight at once per API server."
    )

    @model_validator(mode="after")
    def _large_datasets(self) -> Settings:
        if self.large_datasets:
            self.max_body_bytes = max(self.max_body_bytes, LARGE_BODY_BYTES)
            self.max_dataset_cells = max(self.max_dataset_cells, LARGE_DATASET_CELLS)
        return self

    @property
    def api_key_list(self) -> list[str]:
        """The configured bearer tokens (empty when the API is open)."""
        if not self.api_keys:
            return []
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        """The origins CORS allows (empty when CORS is off)."""
        if not self.cors_origins:
            return []
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment once.

    Tests call ``get_settings.cache_clear()`` after changing the environment.
    """
    return Settings()
