"""Is the worker of a running job still alive? The rules every judge uses (the sweeper, a retry).

A worker is a process, named ``host:pid:token`` (the token random per process, so a restarted
container that reuses a pid is told apart). On SQLite a job that holds the write lock (a batch
applied in one transaction) blocks every heartbeat — its own and every other job's — so liveness
cannot rest on the heartbeat alone. The worker of a running job is **gone** when

1. it is this process, and no thread of this process runs the job (exact: each process keeps a
   registry of the jobs it runs, :data:`running`); or
2. it ran on this host (same hostname) and its process no longer exists — or it had this
   process's own pid with another token (an earlier process whose pid was reused); or
3. its last heartbeat is older than ``stale_after`` — this decides for a worker on another host
   (servers sharing a PostgreSQL database, whose heartbeats go on during long work) and for one
   whose pid exists here but may belong to another program.

Rules 1 and 2 decide at once after a crash or a restart on the same host, on both backends. On
SQLite rule 3 only matters for a second process on the same file, whose heartbeat may be late by
as long as another job holds the write lock: it can then be judged gone while alive, which costs
an attempt, never data — every write a worker makes to its job is fenced (cdp/jobs/runner.py).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from datetime import datetime
from typing import Any

import sqlalchemy as sa

STALE_AFTER_SECONDS = 30.0

_process: tuple[int, str] | None = None

# (database, job id) → the context of the job a thread of this process runs, registered right
# after its claim. While a claim is in flight (``claiming`` > 0) rule 1 does not judge: the job
# just claimed may not be registered yet. The lock is never held across a database call (a
# request holding SQLite's write lock may be waiting for it).
running: dict[tuple[str, int], Any] = {}
running_lock = threading.Lock()
claiming = 0


def worker_id() -> str:
    """This process as a worker: ``host:pid:token`` (a new token in a forked child)."""
    global _process
    pid = os.getpid()
    if _process is None or _process[0] != pid:
        _process = (pid, f"{socket.gethostname()[:80]}:{pid}:{secrets.token_hex(4)}")
    return _process[1]


def database_name(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _pid_exists(pid: int) -> bool:
    if os.name != "posix":
        return True  # cannot tell without side effects: the heartbeat decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def worker_gone(*, database: str, job_id: int, worker: str | None, heartbeat_at: datetime | None,
                now: datetime, stale_after: float = STALE_AFTER_SECONDS) -> str | None:
    """Why the worker of a running job is gone (the rules of the module doc), or None when it
    may be alive."""
    if worker is None:
        return "no worker recorded"
    if worker == worker_id():
        with running_lock:
            alive = (database, job_id) in running or claiming > 0
        return None if alive else f"worker {worker} is this server, which does not run the job any more"
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname()[:80] and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return f"worker {worker} was an earlier server process with this process's id"
        if not _pid_exists(pid):
            return f"worker {worker} no longer runs"
    if heartbeat_at is None:
        return f"worker {worker} never sent a heartbeat"
    silent = (now - heartbeat_at).total_seconds()
    if silent > stale_after:
        return f"no heartbeat from worker {worker} for {silent:.0f} s"
    return None
