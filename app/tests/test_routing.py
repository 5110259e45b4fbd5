"""The live Celery app routes each task to the expected queue."""

import pytest

from acme.celery import app as celery_app
from core.views import dispatchable_task_names

EXPECTED = {
    "orders.tasks.send_order_confirmation": "notifications",
    "notifications.tasks.send_weekly_digest": "notifications",
    "accounts.tasks.cleanup_expired_sessions": "notifications",
    "reports.tasks.generate_monthly_report": "reports",
    "inventory.tasks.sync_external_inventory": "reports",
    "images.tasks.resize_upload": "media",
    "diagnostics.tasks.ping": "celery",
    "diagnostics.tasks.flaky": "celery",
}


@pytest.mark.parametrize(("task_name", "queue"), sorted(EXPECTED.items()))
def test_task_routes_to_queue(task_name, queue):
    route = celery_app.amqp.router.route({}, task_name)
    assert route["queue"].name == queue
    assert route["queue"].routing_key == queue


def test_all_expected_tasks_are_registered():
    assert set(EXPECTED) <= dispatchable_task_names()


def test_declared_queues_cover_routes():
    declared = set(celery_app.amqp.queues)
    assert {"celery", "notifications", "reports", "media"} <= declared


def test_beat_schedule_loaded_into_celery():
    schedule = celery_app.conf.beat_schedule
    assert set(schedule) == {
        "cleanup-expired-sessions",
        "sync-external-inventory",
        "send-weekly-digest",
    }
