"""Build the Celery part of the Django settings from environment variables.

Kept free of Django settings state so it can be unit-tested with any mapping.
Every key returned is a Django setting in the ``CELERY_`` namespace.
"""

import json
from collections.abc import Mapping
from typing import Any

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from .env import env_bool, env_int, env_list, env_str

DEFAULT_QUEUE = "celery"

# Publishing keeps retrying while the broker is away (a restart, a failover) for about 35 s:
# retries 0, 0.5, 1, 1.5, then 2 s apart. Celery's default (3 retries, about 0.6 s) turns a 5-second
# broker restart into an OperationalError, a 500 and a lost task.
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 20,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 2,
}

# Task name (or glob) -> queue name. Tasks not listed go to the default queue.
DEFAULT_TASK_ROUTES: dict[str, str] = {
    "orders.tasks.*": "notifications",
    "notifications.tasks.*": "notifications",
    "accounts.tasks.*": "notifications",
    "reports.tasks.*": "reports",
    "inventory.tasks.*": "reports",
    "images.tasks.*": "media",
}


def parse_task_routes(raw: str | None) -> dict[str, str]:
    """Parse ``CELERY_TASK_ROUTES`` (JSON object pattern -> queue name).

    Empty/unset returns the built-in defaults; when set it *replaces* them.
    A value may also be an object with a ``queue`` key.
    """
    if raw is None or not raw.strip():
        return dict(DEFAULT_TASK_ROUTES)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"CELERY_TASK_ROUTES is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ImproperlyConfigured("CELERY_TASK_ROUTES must be a JSON object")
    routes: dict[str, str] = {}
    for pattern, target in data.items():
        queue = target.get("queue") if isinstance(target, dict) else target
        if not isinstance(queue, str) or not queue:
            raise ImproperlyConfigured(f"CELERY_TASK_ROUTES[{pattern!r}] must name a queue")
        routes[str(pattern)] = queue
    return routes


def build_queues(names: list[str], *, quorum: bool) -> tuple[Queue, ...]:
    """Declare one queue per name, each bound to an exchange of the same name."""
    exchange_type = "topic" if quorum else "direct"
    queue_arguments = {"x-queue-type": "quorum"} if quorum else None
    return tuple(
        Queue(
            name,
            Exchange(name, type=exchange_type),
            routing_key=name,
            queue_arguments=queue_arguments,
        )
        for name in names
    )


def build_celery_settings(env: Mapping[str, str]) -> dict[str, Any]:
    broker_url = env_str(env, "CELERY_BROKER_URL") or "redis://localhost:6379/0"
    result_backend = env_str(env, "CELERY_RESULT_BACKEND") or "redis://localhost:6379/1"
    default_queue = env_str(env, "CELERY_TASK_DEFAULT_QUEUE") or DEFAULT_QUEUE
    quorum = env_bool(env, "CELERY_QUORUM_QUEUES", False)

    routes = parse_task_routes(env.get("CELERY_TASK_ROUTES"))
    queue_names = env_list(env, "CELERY_TASK_QUEUES")
    if not queue_names:
        queue_names = sorted(set(routes.values()))
    if default_queue not in queue_names:
        queue_names.append(default_queue)

    transport_options: dict[str, Any] = {}
    if broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        transport_options["visibility_timeout"] = env_int(env, "CELERY_VISIBILITY_TIMEOUT", 3600)
    if quorum:
        transport_options["confirm_publish"] = True

    conf: dict[str, Any] = {
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": result_backend,
        "CELERY_BROKER_TRANSPORT_OPTIONS": transport_options,
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
        "CELERY_TASK_PUBLISH_RETRY": True,
        "CELERY_TASK_PUBLISH_RETRY_POLICY": dict(PUBLISH_RETRY_POLICY),
        # Storing a result retries too while the result backend restarts (no failed task).
        "CELERY_RESULT_BACKEND_ALWAYS_RETRY": True,
        "CELERY_RESULT_BACKEND_MAX_RETRIES": 20,
        "CELERY_ACCEPT_CONTENT": ["json"],
        "CELERY_TASK_SERIALIZER": "json",
        "CELERY_RESULT_SERIALIZER": "json",
        "CELERY_RESULT_ACCEPT_CONTENT": ["json"],
        "CELERY_TIMEZONE": "UTC",
        "CELERY_ENABLE_UTC": True,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TASK_REJECT_ON_WORKER_LOST": True,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": env_int(env, "CELERY_WORKER_PREFETCH_MULTIPLIER", 1),
        "CELERY_TASK_TIME_LIMIT": env_int(env, "CELERY_TASK_TIME_LIMIT", 300),
        "CELERY_TASK_SOFT_TIME_LIMIT": env_int(env, "CELERY_TASK_SOFT_TIME_LIMIT", 270),
        "CELERY_WORKER_MAX_TASKS_PER_CHILD": env_int(
            env, "CELERY_WORKER_MAX_TASKS_PER_CHILD", 1000
        ),
        "CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS": True,
        "CELERY_RESULT_EXPIRES": env_int(env, "CELERY_RESULT_EXPIRES", 86400),
        "CELERY_RESULT_EXTENDED": True,
        "CELERY_TASK_TRACK_STARTED": True,
        "CELERY_WORKER_SEND_TASK_EVENTS": True,
        "CELERY_TASK_SEND_SENT_EVENT": True,
        "CELERY_TASK_DEFAULT_QUEUE": default_queue,
        "CELERY_TASK_DEFAULT_EXCHANGE": default_queue,
        "CELERY_TASK_DEFAULT_ROUTING_KEY": default_queue,
        "CELERY_TASK_ROUTES": {pattern: {"queue": q} for pattern, q in routes.items()},
        "CELERY_TASK_QUEUES": build_queues(queue_names, quorum=quorum),
        "CELERY_BEAT_SCHEDULE": build_beat_schedule(env),
    }
    if quorum:
        conf.update(
            {
                "CELERY_TASK_DEFAULT_QUEUE_TYPE": "quorum",
                "CELERY_TASK_DEFAULT_EXCHANGE_TYPE": "topic",
                "CELERY_TASK_CREATE_MISSING_QUEUE_TYPE": "quorum",
                "CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE": "topic",
            }
        )
    return conf


def build_beat_schedule(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    sync_seconds = env_int(env, "CELERY_INVENTORY_SYNC_SECONDS", 300)
    if sync_seconds <= 0:
        raise ImproperlyConfigured("CELERY_INVENTORY_SYNC_SECONDS must be positive")
    return {
        "cleanup-expired-sessions": {
            "task": "accounts.tasks.cleanup_expired_sessions",
            "schedule": crontab(hour=3, minute=0),
        },
        "sync-external-inventory": {
            "task": "inventory.tasks.sync_external_inventory",
            "schedule": float(sync_seconds),
        },
        "send-weekly-digest": {
            "task": "notifications.tasks.send_weekly_digest",
            "schedule": crontab(day_of_week="mon", hour=9, minute=0),
        },
    }
