"""/v1/webhooks (the tenant's signing secret), /v1/runs/{id}/notifications and
/v1/sweeps/{id}/notifications."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ReadSession, Tenant, ValidRunId, WriteSession
from app.api.presenters import notification_public
from app.api.responses import errors
from app.api.schemas import NotificationPublic, Page, WebhookSecretPublic
from app.db.models import RunNotification
from app.services import notifications, sweeps

router = APIRouter(tags=["webhooks"])


def _secret(row: object) -> WebhookSecretPublic:
    return WebhookSecretPublic.model_validate(row, from_attributes=True)


@router.get("/v1/webhooks/secret", response_model=WebhookSecretPublic)
def get_webhook_secret(session: WriteSession, tenant: Tenant) -> WebhookSecretPublic:
    """Your webhook signing secret (made on first use).

    Every webhook carries `Backprop-Signature: t=<unix seconds>,v1=<hex>`, where
    `v1` is HMAC-SHA256 with this secret over `"<t>."` followed by the raw body.
    """
    return _secret(notifications.get_secret(session=session, owner=tenant))


@router.post("/v1/webhooks/secret/rotate", response_model=WebhookSecretPublic)
def rotate_webhook_secret(session: WriteSession, tenant: Tenant) -> WebhookSecretPublic:
    """Replace your webhook signing secret; webhooks sent from now on use the new one."""
    return _secret(notifications.rotate_secret(session=session, owner=tenant))


@router.get(
    "/v1/runs/{run_id}/notifications",
    response_model=Page[NotificationPublic],
    responses=errors(401, 404),
)
def list_run_notifications(run_id: ValidRunId, session: ReadSession) -> Page[NotificationPublic]:
    """The webhooks of a run (its `notify_url`): status, attempts, answers and times."""
    return _page(notifications.list_for_run(session=session, run_id=run_id))


@router.get(
    "/v1/sweeps/{sweep_id}/notifications",
    response_model=Page[NotificationPublic],
    responses=errors(401, 404),
)
def list_sweep_notifications(
    sweep_id: str, session: ReadSession, tenant: Tenant
) -> Page[NotificationPublic]:
    """The webhooks of a sweep (its `notify_url`, on its terminal status): status,
    attempts, answers and times. Its trials' webhooks are on each trial's run."""
    sweeps.get_sweep(session=session, owner=tenant, sweep_id=sweep_id)  # 404 if not yours
    return _page(notifications.list_for_sweep(session=session, sweep_id=sweep_id))


def _page(rows: list[RunNotification]) -> Page[NotificationPublic]:
    return Page[NotificationPublic](
        data=[notification_public(row) for row in rows], has_more=False, next_after=None
    )
