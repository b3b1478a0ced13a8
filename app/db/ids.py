"""Opaque, time-sortable resource ids such as ``run_0193a1b2c3d4e5f60718293a``.

The first twelve hex digits are the creation time in milliseconds and the rest is
random, so ordering by id is ordering by creation time; clients must still treat
ids as opaque strings.
"""

from __future__ import annotations

import secrets
import time

PREFIXES = {
    "network": "net",
    "dataset": "ds",
    "run": "run",
    "checkpoint": "ckpt",
    "notification": "ntf",
    "sweep": "swp",
}


def new_id(kind: str) -> str:
    """Return a fresh id for a resource of ``kind`` (a key of :data:`PREFIXES`)."""
    millis = time.time_ns() // 1_000_000
    return f"{PREFIXES[kind]}_{millis:012x}{secrets.token_hex(6)}"
