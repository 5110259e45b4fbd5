"""Tasks used by operations and the end-to-end tests of the deployment."""

import time

from celery import shared_task

from core.taskinfo import task_context


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
