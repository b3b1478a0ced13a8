"""The processes of a ``backprop serve`` on Linux, found in /proc: its fork server and
the workers it forked (:func:`app.jobs.local_pool.worker_context`)."""

from __future__ import annotations

from pathlib import Path

from app.jobs.celery_app import child_pids


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (exists and is not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def fork_servers(server_pid: int) -> list[int]:
    """The fork servers among the children of ``server_pid``."""
    return [
        child
        for child in child_pids(server_pid)
        if b"multiprocessing.forkserver" in _command(child)
    ]


def pool_workers(server_pid: int) -> list[int]:
    """The live worker processes of a ``backprop serve``: its fork server's children."""
    return [
        worker
        for fork_server in fork_servers(server_pid)
        for worker in child_pids(fork_server)
        if alive(worker)
    ]


def descendant_pids(pid: int) -> list[int]:
    """Every process below ``pid`` (its children, theirs, and so on)."""
    children = child_pids(pid)
    return [*children, *(grandchild for child in children for grandchild in descendant_pids(child))]
