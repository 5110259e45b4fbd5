"""Tasks used by operations and the end-to-end tests of the deployment."""

import sys
import time
from pathlib import Path

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError
from django.db.models import F

from core.taskinfo import task_context

from .models import DrillRun

# The directory this project's code was imported from (a release directory once deployed).
PROJECT_DIR = Path(__file__).resolve().parent.parent


@shared_task(bind=True)
def ping(self) -> dict:
    return {**task_context(self, time.time()), "pong": True}


@shared_task(bind=True)
def flaky(self, failures: int = 3, countdown: int = 1) -> dict:
    """Fail (and retry) ``failures`` times, then succeed."""
    started_at = time.time()
    if self.request.retries < failures:
        raise self.retry(
            exc=RuntimeError(f"flaky failure {self.request.retries + 1}/{failures}"),
            countdown=countdown,
            max_retries=failures,
        )
    return {**task_context(self, started_at), "retries": self.request.retries}


@shared_task(bind=True)
def sleep(self, seconds: float = 1.0) -> dict:
    """Occupy a worker slot for a while (concurrency / time-limit checks)."""
    started_at = time.time()
    time.sleep(min(float(seconds), 600.0))
    return {**task_context(self, started_at), "slept": float(seconds)}


def code_dirs() -> list[str]:
    """The project directories this process's loaded project modules came from: one, unless the
    process imported from two releases."""
    top_level = {path.stem for path in PROJECT_DIR.iterdir()}
    dirs = set()
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name.partition(".")[0] not in top_level or not file:
            continue
        path = Path(file)
        levels = name.count(".") + (1 if path.name == "__init__.py" else 0)
        dirs.add(str(path.parents[levels]))
    return sorted(dirs)


def _count(drill_name: str, seq: int, **fields) -> None:
    DrillRun.objects.get_or_create(drill=drill_name, seq=seq)
    DrillRun.objects.filter(drill=drill_name, seq=seq).update(**fields)


# A database restart makes it retry (with backoff) instead of failing.
@shared_task(
    bind=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=1,
    retry_backoff_max=5,
    retry_jitter=False,
    max_retries=30,
)
def drill(
    self, drill_name: str, seq: int, seconds: float = 0.0, ignore_soft_limit: bool = False
) -> dict:
    """A fault drill's unit of work: counted when it starts and when it finishes (DrillRun).
    `ignore_soft_limit` makes it overrun its soft time limit, as a stuck task would, until the hard
    limit kills it."""
    started_at = time.time()
    _count(drill_name, seq, executions=F("executions") + 1)
    deadline = time.monotonic() + min(float(seconds), 600.0)
    while (left := deadline - time.monotonic()) > 0:
        try:
            time.sleep(left)
        except SoftTimeLimitExceeded:
            if not ignore_soft_limit:
                raise
    _count(drill_name, seq, completions=F("completions") + 1, code_dirs=code_dirs())
    return {**task_context(self, started_at), "seq": seq}
