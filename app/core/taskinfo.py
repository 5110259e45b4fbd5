"""Helpers shared by all tasks."""

import time
from typing import Any

from celery import Task


def task_context(task: Task, started_at: float) -> dict[str, Any]:
    """Standard fields every task result carries (used by end-to-end tests)."""
    request = task.request
    return {
        "hostname": request.hostname,
        "queue": (request.delivery_info or {}).get("routing_key"),
        "started_at": started_at,
        "finished_at": time.time(),
    }
