"""Job kinds: a name, the function that does the work, and how failures are treated. A domain
adds background work by registering a kind; the runner never changes for it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from cdp.jobs.queue import Job
    from cdp.jobs.runner import JobContext


class Cause(StrEnum):
    """Why a job ended without its handler deciding so."""

    worker_gone = "worker_gone"  # the process running it stopped (crash, kill) or went silent
    shutdown = "shutdown"  # the server was shut down while it ran
    error = "error"  # the handler raised an unexpected exception
    cancelled = "cancelled"  # someone asked for it to stop


@dataclass(frozen=True)
class Failure:
    cause: Cause
    detail: str  # for people: which worker, what error


@dataclass(frozen=True)
class JobKind:
    """``run(context)`` does the work (cdp/jobs/runner.py :class:`JobContext`). A failure is
    retried until ``max_attempts`` claims were made, after ``backoff_seconds`` doubled per
    attempt (at most ``max_backoff_seconds``); then the job fails for good and ``on_failure``
    runs in the same transaction that marks it failed or cancelled, so the domain can record why
    (a batch says its server stopped). Work the handler ends itself (``context.succeed`` /
    ``context.fail``) records its own outcome."""

    name: str
    run: Callable[[JobContext], None]
    max_attempts: int = 3
    backoff_seconds: float = 10.0
    max_backoff_seconds: float = 3600.0
    on_failure: Callable[[sa.Connection, Job, Failure], None] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64:
            raise ValueError(f"a job kind's name is 1 to 64 characters: {self.name!r}")
        if self.max_attempts < 1:
            raise ValueError(f"job kind {self.name!r}: max_attempts must be at least 1")

    def backoff(self, attempt: int) -> timedelta:
        """The wait before attempt ``attempt + 1``, after attempt ``attempt`` failed."""
        return timedelta(seconds=min(self.backoff_seconds * 2 ** max(attempt - 1, 0), self.max_backoff_seconds))


class Registry:
    """The kinds one runner runs, by name; a name registered twice is an error."""

    def __init__(self, kinds: Iterable[JobKind] = ()):
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: JobKind) -> JobKind:
        if kind.name in self._kinds:
            raise ValueError(f"job kind {kind.name!r} is already registered")
        self._kinds[kind.name] = kind
        return kind

    def __getitem__(self, name: str) -> JobKind:
        return self._kinds[name]

    def get(self, name: str) -> JobKind | None:
        return self._kinds.get(name)

    def __contains__(self, name: Any) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds.values())

    def names(self) -> list[str]:
        return sorted(self._kinds)
