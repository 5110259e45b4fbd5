"""Celery workers (one supervisor program per queue), Beat and Flower under supervisor."""

import json
import os
import time

import pytest
import testinfra.utils.ansible_runner
from dcs_testlib import celery, http, restart_during_task, send_task

INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
APP_NAME = INVENTORY.get_hosts("workers")[0]
APP_VARS = INVENTORY.get_variables(APP_NAME)
QUEUES: dict[str, dict] = APP_VARS["celery_queues"]
SOFT_SHUTDOWN = int(APP_VARS["celery_worker_soft_shutdown_timeout"])
STOP_MARGIN = 30  # celery_worker_stop_timeout_margin's default
BEAT = "celery-beat"
FLOWER = "celery-flower"

testinfra_hosts = [APP_NAME]


def program(queue: str) -> str:
    return f"celery-worker-{queue}"


def node(queue: str) -> str:
    return f"{queue}@{APP_NAME}"


def log(host, name: str) -> str:
    """The last lines supervisor captured from a program's stdout/stderr."""
    return host.run(f"supervisorctl tail -4000 {name}").stdout


def statuses(host) -> dict[str, list[str]]:
    """supervisorctl status as program -> [state, ...rest]."""
    # supervisorctl status exits 3 when a program is not running; the output says which.
    out = host.run("supervisorctl status").stdout
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}


def main_pid(host, name: str) -> int:
    return int(host.check_output(f"supervisorctl pid {name}"))


def program_config(host, name: str) -> dict[str, str]:
    content = host.file(f"/etc/supervisor/conf.d/{name}.conf").content_string
    return dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in content.splitlines())
        if value and not key.startswith(";")
    )


def test_supervisord_runs_and_starts_at_boot(host):
    service = host.service("supervisor")
    assert service.is_running
    assert service.is_enabled


def test_supervisor_runs_one_program_per_queue_plus_beat_and_flower(host):
    found = statuses(host)
    expected = sorted([program(q) for q in QUEUES] + [BEAT, FLOWER])
    assert sorted(found) == expected, found
    assert all(found[name][0] == "RUNNING" for name in expected), found


def test_no_systemd_celery_unit_is_active(host):
    units = host.check_output("systemctl list-units --all --plain --no-legend 'celery-*'")
    assert not [line for line in units.splitlines() if " active " in line], units
    assert not host.file("/etc/systemd/system/celery-worker@.service").exists
    assert not host.file("/etc/systemd/system/celery-beat.service").exists
    assert not host.file("/etc/systemd/system/celery-flower.service").exists


def test_a_queue_dropped_from_the_list_leaves_no_program(host):
    assert program("scratch") not in statuses(host)
    assert not host.file(f"/etc/supervisor/conf.d/{program('scratch')}.conf").exists
    assert not host.file("/etc/celery/worker-scratch.env").exists
    assert celery(host, f"inspect ping -d {node('scratch')} --timeout 3").rc != 0


@pytest.mark.parametrize("name", sorted([program(q) for q in QUEUES] + [BEAT, FLOWER]))
def test_programs_run_as_the_app_user(host, name):
    pid = main_pid(host, name)
    users = host.check_output(f"ps -o user= -p {pid} --ppid {pid}").split()
    assert users and set(users) == {"acme"}, log(host, name)


@pytest.mark.parametrize("name", ["celery-worker", BEAT, FLOWER])
def test_launchers_are_executable_only_by_root_and_the_app_group(host, name):
    launcher = host.file(f"/usr/local/libexec/{name}")
    assert launcher.user == "root"
    assert launcher.group == "acme"
    assert launcher.mode == 0o750


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_each_program_stops_within_its_shutdown_timeout_not_its_longest_task(host, queue):
    """TERM to the worker only, which the launcher makes Celery's cold shutdown after its soft one
    (REMAP_SIGTERM=SIGQUIT): supervisor waits the shutdown timeout plus a margin, not a time limit."""
    config = program_config(host, program(queue))
    assert config["stopsignal"] == "TERM"
    assert config["stopasgroup"] == "false"
    assert config["killasgroup"] == "false"
    assert int(config["stopwaitsecs"]) == SOFT_SHUTDOWN + STOP_MARGIN
    assert "REMAP_SIGTERM=SIGQUIT" in host.file("/usr/local/libexec/celery-worker").content_string


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_each_queues_worker_answers_a_ping(host, queue):
    result = celery(host, f"inspect ping -d {node(queue)} --json --timeout 10")
    assert result.rc == 0, result.stdout + result.stderr + log(host, program(queue))
    assert json.loads(result.stdout) == {node(queue): {"ok": "pong"}}


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_each_worker_consumes_only_its_own_queue(host, queue):
    result = celery(host, f"inspect active_queues -d {node(queue)} --json --timeout 10")
    assert result.rc == 0, result.stdout + result.stderr
    assert [q["name"] for q in json.loads(result.stdout)[node(queue)]] == [queue]


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_a_task_sent_to_each_queue_runs_on_that_queues_worker(host, queue):
    result = send_task(host, "diagnostics.tasks.ping", queue)
    assert result.rc == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["pong"] is True
    assert answer["hostname"] == node(queue)


def test_exactly_one_beat_runs_and_its_probe_reports_its_schedule(host):
    # The bracket keeps pgrep from matching the shell that runs it.
    assert host.check_output("pgrep -c -f '[-]A acme beat'") == "1"
    assert host.file("/var/lib/celery-beat/celerybeat-schedule").exists
    # Beat runs through its liveness probe (roles/celery_beat), under supervisor as under systemd.
    liveness = json.loads(host.file("/var/lib/celery-beat/liveness.json").content_string)
    assert liveness["shortest_interval"] > 0, liveness
    assert liveness["entries"] > 0, liveness


def test_flower_keeps_its_password_off_the_command_line(host):
    assert APP_VARS["flower_basic_auth_password"] not in host.check_output("ps -eo args")


FLOWER_URL = f"http://127.0.0.1:5555/{APP_VARS['flower_url_prefix']}/api/workers"
FLOWER_AUTH = f"{APP_VARS['flower_basic_auth_user']}:{APP_VARS['flower_basic_auth_password']}"


def test_flower_refuses_requests_without_credentials(host):
    assert http(host, "GET", FLOWER_URL)[0] == 401


def test_flower_lists_every_worker_with_credentials(host):
    expected = {node(q) for q in QUEUES}
    deadline = time.time() + 30
    while True:
        # refresh=1 makes Flower ask the workers now instead of waiting for their events.
        status, body = http(host, "GET", f"{FLOWER_URL}?refresh=1", basic=FLOWER_AUTH)
        workers = set(json.loads(body)) if status == 200 else set()
        if workers >= expected or time.time() > deadline:
            break
        time.sleep(2)
    assert status == 200, log(host, FLOWER)
    assert workers == expected


def test_a_restart_lets_the_running_task_finish(host):
    """The unit restarts while a 6-second task runs: the stop lets it finish within the queue's
    shutdown timeout (10 s here, Celery's soft shutdown) before the worker exits; it succeeds once."""
    result = restart_during_task(host, "reports", ["supervisorctl", "restart", program("reports")])
    assert result.rc == 0, result.stdout + result.stderr + log(host, program("reports"))
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"SUCCESS 6.0 {node('reports')}"
    # supervisorctl restart only returned once the running task had finished.
    assert float(lines[-2].split()[-1]) >= 3
    assert "WorkerLostError" not in log(host, program("reports"))
    assert statuses(host)[program("reports")][0] == "RUNNING"
