"""RabbitMQ as the broker of a third-party project: quorum queues on topic exchanges in Celery's own
view and the broker's, no guest, native delayed delivery, retries that arrive."""

import json
import shlex
import time

import pytest
from conftest import (
    APP,
    BROKER,
    QUEUE_NODES,
    QUEUES,
    ROOT,
    UNIT_PREFIX,
    celery,
    journal,
    secret,
    with_app,
)

VHOST = APP


def _queue_types(broker) -> dict[str, str]:
    out = broker.check_output(f"rabbitmqctl list_queues -p {VHOST} name type --formatter json -q")
    return {q["name"]: q["type"] for q in json.loads(out)}


def _delayed_messages(broker, within: float = 6) -> int:
    """Messages in Celery's celery_delayed_* queues, polled: RabbitMQ updates the counts every few
    seconds."""
    deadline = time.monotonic() + within
    while True:
        out = broker.check_output(
            f"rabbitmqctl list_queues -p {VHOST} name messages --formatter json -q"
        )
        count = sum(
            q["messages"] for q in json.loads(out) if q["name"].startswith("celery_delayed_")
        )
        if count or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


@pytest.mark.parametrize("queue", list(QUEUES))
def test_each_celery_queue_is_a_quorum_queue_on_the_broker(broker, queue):
    assert _queue_types(broker)[queue] == "quorum"


def test_celery_itself_declares_quorum_queues_on_topic_exchanges(worker):
    """What the workers declare (not only what the vhost's default queue type made of it)."""
    result = celery(worker, "inspect active_queues --json --timeout 10")
    assert result.rc == 0, result.stderr
    for node, queues in json.loads(result.stdout).items():
        for queue in queues:
            assert queue["queue_arguments"] == {"x-queue-type": "quorum"}, (node, queue)
            assert queue["exchange"]["type"] == "topic", (node, queue)


def test_guest_is_gone_and_cannot_log_in(broker, worker):
    assert "guest" not in broker.check_output("rabbitmqctl list_users -q")
    probe = (
        "import kombu\n"
        f"kombu.Connection('amqp://guest:guest@{BROKER}:5672//', connect_timeout=5)"
        ".ensure_connection(max_retries=1)\n"
    )
    result = worker.run(f"{ROOT}/current/venv/bin/python -c {shlex.quote(probe)}")
    assert result.rc != 0
    assert "ACCESS_REFUSED" in result.stderr or "AccessRefused" in result.stderr


def test_the_app_user_can_use_only_its_vhost(broker):
    permissions = broker.check_output(
        f"rabbitmqctl list_user_permissions {APP} --formatter json -q"
    )
    assert [p["vhost"] for p in json.loads(permissions)] == [VHOST]


@pytest.mark.parametrize("queue", list(QUEUES))
def test_workers_set_up_native_delayed_delivery(worker, queue):
    """What the running worker logged since it started (earlier starts are history)."""
    unit = f"{UNIT_PREFIX}-worker@{queue}.service"
    started = worker.check_output(f"systemctl show -p ActiveEnterTimestamp --value {unit}")
    log = worker.check_output(
        f"journalctl -u {unit} --since {shlex.quote(started)} --no-pager -o cat"
    ).lower()
    assert "ready." in log
    assert "direct exchange" not in log
    # Every worker binds all of the app's queues to the delay exchanges; the deploy declares them
    # all before any worker starts (django_app's verify step).
    assert "failed to bind" not in log
    assert "native delayed delivery will not be available" not in log


def test_a_prompt_task_starts_within_a_second_after_40_countdown_tasks(web):
    """The countdown tasks wait in RabbitMQ's delay queues, not in the worker's memory, so the
    prompt task sent after them does not queue behind them."""
    timing = with_app(
        web,
        "for _ in range(40):\n"
        "    app.send_task('proj.tasks.where', countdown=60)\n"
        "sent = time.time()\n"
        "result = app.send_task('proj.tasks.where').get(timeout=30)\n"
        "print(json.dumps({'sent': sent, **result}))",
    )
    assert timing["hostname"] in QUEUE_NODES["jobs"]
    assert timing["started_at"] - timing["sent"] < 1.0, timing


def test_a_delayed_task_waits_in_rabbitmq_not_in_a_worker(web, broker, worker):
    """While it waits, the message sits in one of Celery's celery_delayed_* quorum queues and no
    worker holds it as a scheduled (ETA) task; then it runs on time. The time is taken before the
    send: Celery counts the countdown from inside send_task."""
    sent = with_app(
        web,
        "at = time.time()\n"
        "print(json.dumps({'id': app.send_task('proj.tasks.where', countdown=20).id, 'at': at}))",
    )
    assert _delayed_messages(broker) >= 1
    nodes = ",".join(sorted(QUEUE_NODES["jobs"]))
    scheduled = celery(worker, f"inspect scheduled -d {nodes} --json --timeout 5")
    assert scheduled.rc == 0, scheduled.stderr
    assert json.loads(scheduled.stdout) == {node: [] for node in QUEUE_NODES["jobs"]}
    assert time.time() < sent["at"] + 20, "the checks took longer than the countdown"
    result = with_app(web, f"print(json.dumps(app.AsyncResult({sent['id']!r}).get(timeout=60)))")
    assert result["started_at"] >= sent["at"] + 20


def test_a_task_that_retries_three_times_with_a_countdown_completes(web, worker):
    result = with_app(
        web,
        "r = app.send_task('proj.tasks.flaky', kwargs={'failures': 3, 'countdown': 1})\n"
        "print(json.dumps(r.get(timeout=90)))",
    )
    assert result == {"retries": 3}, journal(worker, f"{UNIT_PREFIX}-worker@jobs.service")


def test_the_broker_secret_is_not_in_the_worker_command_line(worker):
    assert secret("rabbitmq_app_password") not in worker.check_output("ps -eo args")
