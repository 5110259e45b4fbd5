"""RabbitMQ as the broker: quorum queues, no guest, native delayed delivery, retries that arrive."""

import json
import shlex
import time

import pytest
from conftest import APP, BROKER, QUEUES, UNIT_PREFIX, WORKER, celery, journal, secret

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
def test_each_celery_queue_is_a_quorum_queue(broker, queue):
    assert _queue_types(broker)[queue] == "quorum"


def test_guest_is_gone_and_cannot_log_in(broker, worker):
    assert "guest" not in broker.check_output("rabbitmqctl list_users -q")
    probe = (
        "import kombu\n"
        f"kombu.Connection('amqp://guest:guest@{BROKER}:5672//', connect_timeout=5)"
        ".ensure_connection(max_retries=1)\n"
    )
    result = worker.run(f"/srv/{APP}/current/venv/bin/python -c {shlex.quote(probe)}")
    assert result.rc != 0
    assert "ACCESS_REFUSED" in result.stderr or "AccessRefused" in result.stderr


def test_the_app_user_can_use_only_its_vhost(broker):
    permissions = broker.check_output(
        f"rabbitmqctl list_user_permissions {APP} --formatter json -q"
    )
    assert [p["vhost"] for p in json.loads(permissions)] == [VHOST]


@pytest.mark.parametrize("queue", list(QUEUES))
def test_workers_do_not_warn_that_delayed_delivery_is_unsupported(worker, queue):
    """What the running worker logged since it started (earlier starts are history)."""
    unit = f"{UNIT_PREFIX}-worker@{queue}.service"
    started = worker.check_output(f"systemctl show -p ActiveEnterTimestamp --value {unit}")
    log = worker.check_output(
        f"journalctl -u {unit} --since {shlex.quote(started)} --no-pager -o cat"
    ).lower()
    assert "ready." in log
    assert "direct exchange" not in log
    # Every worker binds all of the app's queues to the delay exchanges; a queue whose exchange did
    # not exist yet used to leave delayed delivery off (celery_worker declares them all first).
    assert "failed to bind" not in log
    assert "native delayed delivery will not be available" not in log


def test_a_countdown_task_waits_while_other_tasks_keep_flowing(api):
    """Celery's native delayed delivery on quorum queues: the delayed task sits in RabbitMQ's
    delay exchanges, not in a worker's memory, so the queue keeps moving meanwhile."""
    sent = time.time()
    delayed = api.submit("diagnostics.tasks.ping", countdown=10)
    prompt = api.submit("diagnostics.tasks.ping")
    prompt_state = api.wait(prompt, timeout=30)
    assert prompt_state["state"] == "SUCCESS", prompt_state
    assert prompt_state["result"]["started_at"] < sent + 8
    delayed_state = api.wait(delayed, timeout=60)
    assert delayed_state["state"] == "SUCCESS", delayed_state
    assert delayed_state["result"]["started_at"] >= sent + 10
    assert delayed_state["result"]["hostname"] == f"notifications@{WORKER}"


def test_a_delayed_task_waits_in_rabbitmq_not_in_a_worker(api, broker, worker):
    """While it waits, the message sits in one of Celery's celery_delayed_* quorum queues and no
    worker holds it as a scheduled (ETA) task."""
    sent = time.time()
    delayed = api.submit("diagnostics.tasks.ping", countdown=20)
    assert _delayed_messages(broker) >= 1
    scheduled = celery(worker, f"inspect scheduled -d notifications@{WORKER} --json --timeout 5")
    assert scheduled.rc == 0, scheduled.stderr
    assert json.loads(scheduled.stdout) == {f"notifications@{WORKER}": []}
    assert time.time() < sent + 20, "the checks took longer than the countdown"
    state = api.wait(delayed, timeout=60)
    assert state["state"] == "SUCCESS", state
    assert state["result"]["started_at"] >= sent + 20


def test_a_task_that_retries_three_times_with_a_countdown_completes(api, worker):
    task_id = api.submit("diagnostics.tasks.flaky", kwargs={"failures": 3, "countdown": 1})
    state = api.wait(task_id, timeout=90)
    assert state["state"] == "SUCCESS", (
        state,
        journal(worker, f"{UNIT_PREFIX}-worker@notifications.service"),
    )
    assert state["result"]["retries"] == 3


def test_the_broker_secret_is_not_in_the_worker_command_line(worker):
    assert secret("rabbitmq_app_password") not in worker.check_output("ps -eo args")
