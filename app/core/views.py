import concurrent.futures
import functools
import logging
import uuid
from typing import Any

from celery.result import AsyncResult
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from acme.celery import app as celery_app

from .api import BadRequest, api_view, json_body

logger = logging.getLogger(__name__)

BROKER_CHECK_TIMEOUT = 2


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _connect_broker() -> None:
    timeouts = {
        "socket_timeout": BROKER_CHECK_TIMEOUT,
        "socket_connect_timeout": BROKER_CHECK_TIMEOUT,
    }
    with celery_app.connection_for_write(
        url=settings.CELERY_BROKER_URL,
        connect_timeout=BROKER_CHECK_TIMEOUT,
        transport_options=timeouts,
    ) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_CHECK_TIMEOUT)


def _check_broker() -> None:
    # Hard deadline on top of the socket timeouts: a broker that accepts TCP but
    # never answers must not hang the health check (or the gunicorn worker).
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        executor.submit(_connect_broker).result(timeout=BROKER_CHECK_TIMEOUT + 1)
    except concurrent.futures.TimeoutError as exc:
        raise TimeoutError(f"broker did not answer within {BROKER_CHECK_TIMEOUT + 1}s") from exc
    finally:
        executor.shutdown(wait=False)


def _check_cache() -> None:
    key = f"healthz:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=10)
    value = cache.get(key)
    cache.delete(key)
    if value != "ok":
        raise RuntimeError("cache read-back mismatch")


CHECKS = {"database": _check_database, "broker": _check_broker, "cache": _check_cache}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure makes the check fail
            # The details go to the log only: an anonymous client learns which check failed,
            # never an exception's text (hosts, users, paths).
            logger.warning("healthz: %s check failed: %r", name, exc)
            results[name] = "fail"
        else:
            results[name] = "ok"
    healthy = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if healthy else "fail", "checks": results},
        status=200 if healthy else 503,
    )


@never_cache
@require_GET
def livez(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No dependency is touched (that is /healthz, readiness), so a
    database or broker outage does not make a process manager restart healthy web workers."""
    return JsonResponse({"status": "ok"})


@functools.cache
def _discover_tasks() -> None:
    celery_app.autodiscover_tasks(force=True)


def dispatchable_task_names() -> set[str]:
    _discover_tasks()
    return {name for name in celery_app.tasks if not name.startswith("celery.")}


@api_view
@require_POST
def submit_task(request: HttpRequest) -> JsonResponse:
    data = json_body(request)
    name = data.get("task")
    if not isinstance(name, str) or name not in dispatchable_task_names():
        raise BadRequest(f"unknown task: {name!r}")
    args = data.get("args") or []
    kwargs = data.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise BadRequest("args must be a list and kwargs an object")
    options: dict[str, Any] = {}
    if data.get("countdown") is not None:
        countdown = data["countdown"]
        if not isinstance(countdown, int) or isinstance(countdown, bool) or countdown < 0:
            raise BadRequest("countdown must be a non-negative integer")
        options["countdown"] = countdown
    if data.get("queue"):
        if not isinstance(data["queue"], str):
            raise BadRequest("queue must be a string")
        options["queue"] = data["queue"]
    result = celery_app.send_task(name, args=args, kwargs=kwargs, **options)
    return JsonResponse({"id": result.id, "task": name}, status=202)


@api_view
@require_GET
def task_status(request: HttpRequest, task_id: str) -> JsonResponse:
    result = AsyncResult(task_id, app=celery_app)
    state = result.state
    payload: dict[str, Any] = {"id": task_id, "state": state, "result": None, "date_done": None}
    if result.ready():
        value = result.result
        if result.failed():
            payload["result"] = f"{type(value).__name__}: {value}"
        else:
            payload["result"] = value
        done = result.date_done
        payload["date_done"] = done.isoformat() if hasattr(done, "isoformat") else done
    return JsonResponse(payload)
