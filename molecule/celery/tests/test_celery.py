"""Celery workers (one unit per queue), Beat and Flower behind nginx, as the inventory defines them."""

import json
import os
import time

import pytest
import testinfra.utils.ansible_runner
from dcs_testlib import celery, http, journal, restart_during_task, send_task

INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
WORKER_NAME = INVENTORY.get_hosts("workers")[0]
SCHEDULER_NAME = INVENTORY.get_hosts("scheduler")[0]
WORKER_VARS = INVENTORY.get_variables(WORKER_NAME)
SCHEDULER_VARS = INVENTORY.get_variables(SCHEDULER_NAME)
QUEUES: dict[str, dict] = WORKER_VARS["celery_queues"]
SOFT_SHUTDOWN = int(WORKER_VARS["celery_worker_soft_shutdown_timeout"])
STOP_MARGIN = 30  # celery_worker_stop_timeout_margin's default

# The tests run on the worker; scheduler tests reach the scheduler through its own fixture.
testinfra_hosts = [WORKER_NAME]


@pytest.fixture(scope="module")
def scheduler():
    return INVENTORY.get_host(SCHEDULER_NAME)


def unit(queue: str) -> str:
    return f"celery-worker@{queue}.service"


def node(queue: str) -> str:
    return f"{queue}@{WORKER_NAME}"


def stats(host, queue: str) -> dict:
    result = celery(host, f"inspect stats -d {node(queue)} --json --timeout 10")
    assert result.rc == 0, result.stdout + result.stderr + journal(host, unit(queue))
    return json.loads(result.stdout)[node(queue)]


def systemd_timespan(seconds: int) -> str:
    """systemctl show's rendering of a whole number of seconds, e.g. 100 -> '1min 40s'."""
    minutes, secs = divmod(seconds, 60)
    return " ".join(
        part for part in (f"{minutes}min" if minutes else "", f"{secs}s" if secs else "") if part
    )


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_each_queue_has_an_active_enabled_unit(host, queue):
    service = host.service(unit(queue))
    assert service.is_running, journal(host, unit(queue))
    assert service.is_enabled


def test_the_workers_target_groups_every_queue(host):
    assert host.service("celery-workers.target").is_enabled
    wants = host.check_output("systemctl show -P Wants celery-workers.target").split()
    assert sorted(wants) == sorted(unit(q) for q in QUEUES)


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_each_worker_runs_its_pool_and_concurrency(host, queue):
    settings = QUEUES[queue]
    pool = stats(host, queue)["pool"]
    implementation = {"prefork": "prefork", "threads": "thread", "solo": "solo"}[settings["pool"]]
    assert pool["implementation"] == f"celery.concurrency.{implementation}:TaskPool"
    assert pool["max-concurrency"] == settings["concurrency"]


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_each_worker_prefetches_its_multiplier(host, queue):
    settings = QUEUES[queue]
    assert (
        stats(host, queue)["prefetch_count"]
        == settings["concurrency"] * settings["prefetch_multiplier"]
    )


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_each_worker_consumes_only_its_own_queue(host, queue):
    result = celery(host, f"inspect active_queues -d {node(queue)} --json --timeout 10")
    assert result.rc == 0, result.stdout + result.stderr
    assert [q["name"] for q in json.loads(result.stdout)[node(queue)]] == [queue]


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_each_unit_stops_within_its_shutdown_timeout_not_its_longest_task(host, queue):
    """TERM to the main process only, remapped to Celery's cold shutdown after its soft one: systemd
    waits the shutdown timeout plus a margin, not a time limit."""
    shown = host.check_output(
        f"systemctl show -p KillMode -p KillSignal -p TimeoutStopUSec -p Environment {unit(queue)}"
    )
    properties = dict(line.split("=", 1) for line in shown.splitlines())
    assert properties["KillMode"] == "mixed"
    assert properties["KillSignal"] == "15"
    assert "REMAP_SIGTERM=SIGQUIT" in properties["Environment"].split()
    assert properties["TimeoutStopUSec"] == systemd_timespan(SOFT_SHUTDOWN + STOP_MARGIN)


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_workers_run_as_the_app_user(host, queue):
    main_pid = host.check_output(f"systemctl show -P MainPID {unit(queue)}")
    users = host.check_output(f"ps -o user= -p {main_pid} --ppid {main_pid}").split()
    assert users and set(users) == {"acme"}


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_a_task_sent_to_each_queue_runs_on_that_queues_worker(host, queue):
    result = send_task(host, "diagnostics.tasks.ping", queue)
    assert result.rc == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["pong"] is True
    assert answer["hostname"] == node(queue)


def test_a_restart_lets_the_running_task_finish(host):
    """The unit restarts while a 6-second task runs: the stop lets it finish within the queue's
    shutdown timeout (10 s here, Celery's soft shutdown) before the worker exits; it succeeds once."""
    result = restart_during_task(host, "reports", ["systemctl", "restart", unit("reports")])
    assert result.rc == 0, result.stdout + result.stderr + journal(host, unit("reports"))
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"SUCCESS 6.0 {node('reports')}"
    # systemctl restart only returned once the running task had finished.
    assert float(lines[-2].split()[-1]) >= 3
    assert "WorkerLostError" not in journal(host, unit("reports"))
    assert host.service(unit("reports")).is_running


def test_a_queue_removed_from_the_list_leaves_nothing_behind(host):
    assert not host.file("/etc/celery/worker-scratch.env").exists
    assert not host.file("/etc/systemd/system/celery-worker@scratch.service.d").exists
    listed = host.check_output("systemctl list-units --all --plain --no-legend 'celery-worker@*'")
    assert "scratch" not in listed
    assert not host.service(unit("scratch")).is_enabled
    assert celery(host, f"inspect ping -d scratch@{WORKER_NAME} --timeout 3").rc != 0


def test_beat_runs_once_on_the_scheduler(scheduler):
    assert scheduler.service("celery-beat.service").is_running, journal(
        scheduler, "celery-beat.service"
    )
    assert scheduler.service("celery-beat.service").is_enabled
    # The bracket keeps pgrep from matching the shell that runs it.
    assert scheduler.check_output("pgrep -c -f '[-]A acme beat'") == "1"
    assert scheduler.file("/var/lib/celery-beat/celerybeat-schedule").exists


def test_beat_runs_as_the_app_user(scheduler):
    main_pid = scheduler.check_output("systemctl show -P MainPID celery-beat.service")
    assert scheduler.check_output(f"ps -o user= -p {main_pid}") == "acme"


def test_flower_listens_on_loopback_only(scheduler):
    assert scheduler.service("celery-flower.service").is_running, journal(
        scheduler, "celery-flower.service"
    )
    assert scheduler.socket("tcp://127.0.0.1:5555").is_listening
    assert not scheduler.socket("tcp://0.0.0.0:5555").is_listening


def test_flower_keeps_its_password_off_the_command_line(scheduler):
    assert SCHEDULER_VARS["flower_basic_auth_password"] not in scheduler.check_output("ps -eo args")


FLOWER_AUTH = (
    f"{SCHEDULER_VARS['flower_basic_auth_user']}:{SCHEDULER_VARS['flower_basic_auth_password']}"
)


def test_flower_refuses_requests_without_credentials(scheduler):
    assert http(scheduler, "GET", "http://127.0.0.1/flower/api/workers")[0] == 401


def test_flower_lists_every_worker_through_nginx(scheduler):
    expected = {node(q) for q in QUEUES}
    deadline = time.time() + 30
    while True:
        # refresh=1 makes Flower ask the workers now instead of waiting for their events.
        status, body = http(
            scheduler, "GET", "http://127.0.0.1/flower/api/workers?refresh=1", basic=FLOWER_AUTH
        )
        workers = set(json.loads(body)) if status == 200 else set()
        if workers >= expected or time.time() > deadline:
            break
        time.sleep(2)
    assert status == 200
    assert workers == expected


def test_flower_metrics_are_served_to_the_allowed_address(scheduler):
    status, body = http(scheduler, "GET", "http://127.0.0.1/flower/metrics")
    assert status == 200
    assert "flower_events_total" in body


def test_flower_metrics_are_denied_to_other_addresses(host):
    assert http(host, "GET", f"http://{SCHEDULER_NAME}/flower/metrics")[0] == 403
