"""The webhook delivery loop of an API server (``backprop serve``, any executor).

A thread of the server process polls ``run_notification`` every
``BACKPROP_WEBHOOK_POLL_SECONDS`` for pending notifications that are due, takes
each with a conditional UPDATE that pushes its next attempt past the longest
delivery (so with several API servers exactly one attempts it, and a server
that dies mid-attempt leaves it to be retried), and POSTs it from a small
thread pool (``BACKPROP_WEBHOOK_CONCURRENCY``): neither the API's requests nor
the trainers ever wait for a receiver. Delivery is at least once: a receiver
dedupes on ``Backprop-Notification-Id``.

Each attempt: the run object (a sweep's webhook: the sweep object; frozen at the first
attempt), signed
(:mod:`app.webhooks.signing`) with the tenant's secret, to an address checked
again just before (:mod:`app.webhooks.targets`), redirects not followed,
``BACKPROP_WEBHOOK_TIMEOUT_SECONDS`` for the whole attempt, at most
:data:`MAX_RESPONSE_BYTES` of the answer read. A 2xx answer delivers it; anything
else is retried after ``BACKPROP_WEBHOOK_BACKOFF_SECONDS`` doubling per attempt
(at most ``BACKPROP_WEBHOOK_BACKOFF_MAX_SECONDS``) until
``BACKPROP_WEBHOOK_RETRY_SECONDS`` after the run ended; then it is ``failed``.

The loop also sweeps expired ``Idempotency-Key`` rows every
:data:`PRUNE_EVERY_SECONDS` (the server's other periodic database chore).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlmodel import Session

from app.api.json_out import model_dumps
from app.api.presenters import run_public, sweep_public
from app.config import Settings
from app.db.database import Database
from app.db.models import Run, RunNotification, Sweep, WebhookSecret, utcnow
from app.services import idempotency, notifications, sweep_trials, sweeps
from app.webhooks.signing import SIGNATURE_HEADER, sign
from app.webhooks.targets import TargetRefusedError, check_target

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 64 * 1024
"""Most of a receiver's answer read (the rest is dropped with the connection)."""
PRUNE_EVERY_SECONDS = 60.0
USER_AGENT = "Backprop-Webhook/1"


def _sweep_body(session: Session, sweep_id: str) -> bytes | None:
    """The sweep object of a sweep's webhook, or None when the sweep is gone."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        return None
    runs, rows = sweeps.trial_runs(session, sweep.id), sweeps.rungs(session, sweep.id)
    return model_dumps(sweep_public(sweep, sweep_trials.trials_of(sweep, runs, rows)))


class Notifier:
    """Deliver due webhooks in the background.

    Parameters
    ----------
    settings : Settings
        The ``BACKPROP_WEBHOOK_*`` settings and the database URL (the loop has an
        engine of its own, so it never waits for a connection behind requests).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix="webhook")
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        self._http = httpx.Client(follow_redirects=False, trust_env=False)

    @property
    def hold_seconds(self) -> float:
        """How long a claimed notification is kept from other servers (longer than an attempt)."""
        return 2 * self.settings.webhook_timeout_seconds + 5

    def start(self) -> None:
        """Start the polling thread."""
        self._thread = threading.Thread(target=self._run, name="webhook-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, finish the attempts under way, close everything."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()
        self.db.dispose()

    def _run(self) -> None:
        while not self._halt.wait(self.settings.webhook_poll_seconds):
            try:
                self.round()
            except Exception as error:  # an outage: the next round tries again
                logger.warning("webhook notifier: round failed (%s)", error)

    def round(self) -> int:
        """Claim the due notifications there is room for and start their attempts."""
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            with self.db.writing() as session:
                idempotency.prune(session=session)
        with self._lock:
            room = self.settings.webhook_concurrency - len(self._busy)
        if room <= 0:
            return 0
        with self.db.reading() as session:
            due = notifications.due_ids(session=session, limit=room)
        started = 0
        for notification_id, seen in due:
            with self.db.writing() as session:
                taken = notifications.claim(
                    session=session,
                    notification_id=notification_id,
                    seen=seen,
                    hold_seconds=self.hold_seconds,
                )
            if taken:
                with self._lock:
                    self._busy.add(notification_id)
                future = self._pool.submit(self.deliver, notification_id)
                future.add_done_callback(self._done(notification_id))
                started += 1
        return started

    def _done(self, notification_id: str) -> Any:
        def done(_: Future[None]) -> None:
            with self._lock:
                self._busy.discard(notification_id)

        return done

    def deliver(self, notification_id: str) -> None:
        """Make one attempt at a claimed notification and record it."""
        try:
            self._attempt(notification_id)
        except Exception:  # the claim lapses and the attempt is made again
            logger.exception("webhook %s: attempt failed unexpectedly", notification_id)

    def _body(self, row: RunNotification) -> bytes | None:
        if row.body is not None:
            return row.body
        with self.db.reading() as session:
            if row.sweep_id is not None:
                body = _sweep_body(session, row.sweep_id)
            else:
                run = session.get(Run, row.run_id)
                body = model_dumps(run_public(run)) if run is not None else None
        if body is None:
            return None
        with self.db.writing() as session:
            return notifications.freeze_body(session=session, notification_id=row.id, body=body)

    def _attempt(self, notification_id: str) -> None:
        with self.db.reading() as session:
            row = session.get(RunNotification, notification_id)
        if row is None or row.status != notifications.PENDING:
            return
        body = self._body(row)
        if body is None:
            return  # the run is gone (its notifications go with it)
        with self.db.reading() as session:
            known = session.get(WebhookSecret, row.owner)
        if known is None:
            with self.db.writing() as session:
                known = notifications.get_secret(session=session, owner=row.owner)
        secret = known.secret
        started = utcnow()
        clock = time.monotonic()
        status_code, error = self._post(row, body, secret)
        attempt = {
            "at": started.isoformat(),
            "status_code": status_code,
            "error": error,
            "duration_ms": round((time.monotonic() - clock) * 1000, 1),
        }
        self._record(row, attempt, delivered=error is None)

    def _post(
        self, row: RunNotification, body: bytes, secret: str
    ) -> tuple[int | None, str | None]:
        """POST ``body``; ``(status code, None)`` on a 2xx, else ``(code or None, why)``."""
        try:
            target = check_target(row.url, allow_private=self.settings.webhook_allow_private)
        except TargetRefusedError as exc:
            return None, f"refused: {exc}"
        headers = {
            "Host": target.host_header(),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(secret, body),
            "Backprop-Event": row.event,
            "Backprop-Notification-Id": row.id,
            "Backprop-Delivery-Attempt": str(row.attempts + 1),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        timeout = self.settings.webhook_timeout_seconds
        deadline = time.monotonic() + timeout
        request = self._http.build_request(
            "POST",
            target.pinned_url(),
            content=body,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            extensions=extensions,
        )
        try:
            response = self._http.send(request, stream=True)
            try:
                read = 0
                for chunk in response.iter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                        break
            finally:
                response.close()
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    def _next_attempt(self, row: RunNotification) -> datetime | None:
        """When to try again after this failed attempt, or None: give up."""
        attempts = row.attempts + 1
        wait = min(
            self.settings.webhook_backoff_seconds * 2 ** (attempts - 1),
            self.settings.webhook_backoff_max_seconds,
        )
        at = utcnow() + timedelta(seconds=wait)
        if at > row.created_at + timedelta(seconds=self.settings.webhook_retry_seconds):
            return None
        return at

    def _record(self, row: RunNotification, attempt: dict[str, Any], *, delivered: bool) -> None:
        if delivered:
            status, at = notifications.DELIVERED, None
        else:
            at = self._next_attempt(row)
            status = notifications.PENDING if at is not None else notifications.FAILED
        with self.db.writing() as session:
            notifications.record_attempt(
                session=session,
                notification_id=row.id,
                attempt=attempt,
                status=status,
                next_attempt_at=at,
            )
        level = logging.INFO if delivered else logging.WARNING
        logger.log(
            level,
            "webhook %s (%s, %s) attempt %d: %s",
            row.id,
            row.event,
            row.run_id or row.sweep_id,
            row.attempts + 1,
            "delivered" if delivered else f"{attempt['error']}; {status}",
        )
