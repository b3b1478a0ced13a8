"""The queue is fair between tenants with Celery workers (issue 10, defect 7).

The stack of docker-compose.yml (tests/support/compose.py) with one ``backprop
worker`` and two API keys: A's 12 messages are ahead of B's in the broker, yet B's
run is the first claim after A's run in progress (each delivery claims the fairest
queued run; tests/support/fairness.py).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.compose import stacks
from tests.support.fairness import API_KEYS, b_is_served_next
from tests.support.services import PostgresServer, RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_second_tenant_is_served_after_the_run_in_progress_not_after_the_queue(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    with stacks(tmp_path) as start:
        stack = start(postgres_server, redis_server, workers=1, BACKPROP_API_KEYS=API_KEYS)
        with httpx.Client(base_url=stack.url, timeout=30) as client:
            b_is_served_next(client)
        for process in stack.processes():
            assert "Traceback" not in process.log(), process.log()[-3000:]
