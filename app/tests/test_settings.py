"""Settings built from environment variables."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from acme.celery_config import (
    DEFAULT_TASK_ROUTES,
    build_beat_schedule,
    build_celery_settings,
    parse_task_routes,
)

APP_DIR = Path(__file__).resolve().parent.parent


def load_settings_in_subprocess(env_overrides: dict[str, str], expr: str):
    """Import acme.settings in a fresh interpreter and return ``expr`` evaluated there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(env_overrides)
    code = f"import json, acme.settings as s\nprint(json.dumps({expr}, default=str))\n"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc


def test_secret_key_required_when_not_debug():
    proc = load_settings_in_subprocess({"DJANGO_DEBUG": "false"}, "s.SECRET_KEY")
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr
    assert "DJANGO_SECRET_KEY must be set" in proc.stderr


def test_debug_allows_missing_secret_key():
    proc = load_settings_in_subprocess({"DJANGO_DEBUG": "1"}, "s.DEBUG")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is True


def test_database_url_and_hosts_parsed_from_env():
    proc = load_settings_in_subprocess(
        {
            "DJANGO_SECRET_KEY": "x" * 50,
            "DATABASE_URL": "postgres://acme:s3cret@db.internal:6543/acme_prod",
            "CONN_MAX_AGE": "120",
            "DJANGO_ALLOWED_HOSTS": "app.example.com, www.example.com",
            "CACHE_URL": "redis://cache.internal:6379/2",
        },
        "[s.DATABASES['default'], s.ALLOWED_HOSTS, s.CACHES['default']]",
    )
    assert proc.returncode == 0, proc.stderr
    db, hosts, cache = json.loads(proc.stdout)
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["HOST"], db["PORT"], db["NAME"]) == ("db.internal", 6543, "acme_prod")
    assert (db["USER"], db["PASSWORD"]) == ("acme", "s3cret")
    assert db["CONN_MAX_AGE"] == 120
    assert hosts == ["app.example.com", "www.example.com"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert cache["LOCATION"] == "redis://cache.internal:6379/2"


def test_deploy_check_clean_with_production_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(
        {
            "DJANGO_SECRET_KEY": "k3y-" + "abcdefghijklmnopqrstuvwxyz0123456789" * 2,
            "DJANGO_ALLOWED_HOSTS": "app.example.com",
            "DJANGO_SECURE_SSL_REDIRECT": "1",
            "DJANGO_SESSION_COOKIE_SECURE": "1",
            "DJANGO_CSRF_COOKIE_SECURE": "1",
            "DJANGO_SECURE_HSTS_SECONDS": "31536000",
            "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
            "DJANGO_SECURE_HSTS_PRELOAD": "1",
        }
    )
    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_test_environment_uses_memory_broker_and_locmem():
    assert settings.CELERY_BROKER_URL == "memory://"
    assert settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")
    assert settings.TIME_ZONE == "UTC" and settings.USE_TZ is True


def test_celery_core_options():
    conf = build_celery_settings({})
    assert conf["CELERY_BROKER_URL"] == "redis://localhost:6379/0"
    assert conf["CELERY_RESULT_BACKEND"] == "redis://localhost:6379/1"
    assert conf["CELERY_ACCEPT_CONTENT"] == ["json"]
    assert conf["CELERY_TASK_SERIALIZER"] == conf["CELERY_RESULT_SERIALIZER"] == "json"
    assert conf["CELERY_TASK_ACKS_LATE"] is True
    assert conf["CELERY_TASK_REJECT_ON_WORKER_LOST"] is True
    assert conf["CELERY_WORKER_PREFETCH_MULTIPLIER"] == 1
    assert (conf["CELERY_TASK_TIME_LIMIT"], conf["CELERY_TASK_SOFT_TIME_LIMIT"]) == (300, 270)
    assert conf["CELERY_WORKER_MAX_TASKS_PER_CHILD"] == 1000
    assert conf["CELERY_WORKER_SEND_TASK_EVENTS"] is True
    assert conf["CELERY_TASK_SEND_SENT_EVENT"] is True
    assert conf["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"visibility_timeout": 3600}
    assert "CELERY_TASK_DEFAULT_QUEUE_TYPE" not in conf


def test_publishing_retries_through_a_broker_restart_of_30_seconds():
    """Celery waits min(start + step * n, max) before retry n; together at least 30 s."""
    conf = build_celery_settings({})
    assert conf["CELERY_TASK_PUBLISH_RETRY"] is True
    policy = conf["CELERY_TASK_PUBLISH_RETRY_POLICY"]
    waits = [
        min(policy["interval_start"] + policy["interval_step"] * n, policy["interval_max"])
        for n in range(policy["max_retries"])
    ]
    assert sum(waits) >= 30


def test_celery_numeric_options_from_env():
    conf = build_celery_settings(
        {
            "CELERY_WORKER_PREFETCH_MULTIPLIER": "4",
            "CELERY_TASK_TIME_LIMIT": "60",
            "CELERY_TASK_SOFT_TIME_LIMIT": "50",
            "CELERY_WORKER_MAX_TASKS_PER_CHILD": "10",
            "CELERY_VISIBILITY_TIMEOUT": "7200",
        }
    )
    assert conf["CELERY_WORKER_PREFETCH_MULTIPLIER"] == 4
    assert (conf["CELERY_TASK_TIME_LIMIT"], conf["CELERY_TASK_SOFT_TIME_LIMIT"]) == (60, 50)
    assert conf["CELERY_WORKER_MAX_TASKS_PER_CHILD"] == 10
    assert conf["CELERY_BROKER_TRANSPORT_OPTIONS"]["visibility_timeout"] == 7200


def test_non_redis_broker_has_no_visibility_timeout():
    conf = build_celery_settings({"CELERY_BROKER_URL": "amqp://guest@rabbit:5672//"})
    assert "visibility_timeout" not in conf["CELERY_BROKER_TRANSPORT_OPTIONS"]


def test_quorum_mode():
    conf = build_celery_settings(
        {"CELERY_BROKER_URL": "amqp://acme@rabbit:5672/acme", "CELERY_QUORUM_QUEUES": "1"}
    )
    assert conf["CELERY_TASK_DEFAULT_QUEUE_TYPE"] == "quorum"
    assert conf["CELERY_TASK_DEFAULT_EXCHANGE_TYPE"] == "topic"
    assert conf["CELERY_BROKER_TRANSPORT_OPTIONS"]["confirm_publish"] is True
    queues = conf["CELERY_TASK_QUEUES"]
    assert {q.name for q in queues} == {"celery", "notifications", "reports", "media"}
    for queue in queues:
        assert queue.exchange.type == "topic"
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
        assert queue.routing_key == queue.name


def test_quorum_mode_in_subprocess():
    proc = load_settings_in_subprocess(
        {
            "DJANGO_SECRET_KEY": "x" * 50,
            "CELERY_BROKER_URL": "amqp://rabbit//",
            "CELERY_QUORUM_QUEUES": "true",
        },
        "[s.CELERY_TASK_DEFAULT_QUEUE_TYPE, s.CELERY_TASK_DEFAULT_EXCHANGE_TYPE,"
        " s.CELERY_BROKER_TRANSPORT_OPTIONS,"
        " sorted((q.name, q.exchange.type, q.queue_arguments['x-queue-type'])"
        " for q in s.CELERY_TASK_QUEUES)]",
    )
    assert proc.returncode == 0, proc.stderr
    queue_type, exchange_type, transport, queues = json.loads(proc.stdout)
    assert (queue_type, exchange_type) == ("quorum", "topic")
    assert transport == {"confirm_publish": True}
    assert ["celery", "topic", "quorum"] in queues


def test_classic_mode_uses_direct_exchanges():
    conf = build_celery_settings({})
    for queue in conf["CELERY_TASK_QUEUES"]:
        assert queue.exchange.type == "direct"
        assert not queue.queue_arguments


def test_task_routes_env_replaces_defaults():
    routes = parse_task_routes(json.dumps({"*": "jobs", "reports.tasks.*": {"queue": "heavy"}}))
    assert routes == {"*": "jobs", "reports.tasks.*": "heavy"}
    conf = build_celery_settings(
        {"CELERY_TASK_ROUTES": json.dumps({"*": "jobs"}), "CELERY_TASK_DEFAULT_QUEUE": "jobs"}
    )
    assert conf["CELERY_TASK_ROUTES"] == {"*": {"queue": "jobs"}}
    assert [q.name for q in conf["CELERY_TASK_QUEUES"]] == ["jobs"]


def test_task_routes_default_and_invalid():
    assert parse_task_routes(None) == DEFAULT_TASK_ROUTES
    assert parse_task_routes("  ") == DEFAULT_TASK_ROUTES
    with pytest.raises(ImproperlyConfigured):
        parse_task_routes("[1, 2]")
    with pytest.raises(ImproperlyConfigured):
        parse_task_routes("{not json")
    with pytest.raises(ImproperlyConfigured):
        parse_task_routes('{"a.*": 3}')


def test_task_queues_env_declares_queues():
    conf = build_celery_settings({"CELERY_TASK_QUEUES": "alpha, beta"})
    assert [q.name for q in conf["CELERY_TASK_QUEUES"]] == ["alpha", "beta", "celery"]


def test_beat_schedule():
    schedule = build_beat_schedule({"CELERY_INVENTORY_SYNC_SECONDS": "5"})
    assert schedule["sync-external-inventory"]["schedule"] == 5.0
    assert schedule["sync-external-inventory"]["task"] == "inventory.tasks.sync_external_inventory"
    cleanup = schedule["cleanup-expired-sessions"]["schedule"]
    assert cleanup.hour == {3} and cleanup.minute == {0}
    digest = schedule["send-weekly-digest"]["schedule"]
    assert digest.day_of_week == {1} and digest.hour == {9} and digest.minute == {0}
    assert build_beat_schedule({})["sync-external-inventory"]["schedule"] == 300.0
    with pytest.raises(ImproperlyConfigured):
        build_beat_schedule({"CELERY_INVENTORY_SYNC_SECONDS": "0"})
