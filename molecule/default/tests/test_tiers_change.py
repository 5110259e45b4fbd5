"""Converging converges to the inventory, whatever changed since the last run. (Runs after the
other tests of the scenario, which see the original layout.)

1. The scheduler moves to another host (site.yml --tags web,scheduler with an inventory that says
   so): exactly one Beat runs, on the new scheduler; the host it left keeps nothing of Beat or Flower.
2. The broker is re-created on another address (a re-created container, a re-provisioned VM) and
   site.yml runs with the scenario's own inventory. That one run moves the scheduler back (one Beat,
   on the original host) and picks up the new address: Redis binds it, every app host's URLs name it,
   and tasks flow."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import (
    APP,
    APP_HOSTS,
    BROKER,
    CELERY_APP,
    QUEUE_HOST,
    SCHEDULER,
    UNIT_PREFIX,
    WEB,
    WORKERS,
    host,
    http,
    secret,
)
from dcs_testlib import inventory_with_groups, run_playbook

BEAT_FILES = (
    f"/etc/systemd/system/{UNIT_PREFIX}-beat.service",
    f"/etc/systemd/system/{UNIT_PREFIX}-flower.service",
    f"/etc/supervisor/conf.d/{UNIT_PREFIX}-beat.conf",
    f"/etc/supervisor/conf.d/{UNIT_PREFIX}-flower.conf",
)
NETWORK = "dcs-default"
PROJECT_LABELS = ["--label", "dcs.project=django-celery-stack", "--label", "dcs.scenario=default"]


def beats() -> dict[str, int]:
    pattern = f"'[-]A {CELERY_APP} beat'"
    return {
        name: len(host(name).run(f"pgrep -u {APP} -f -- {pattern}").stdout.split())
        for name in APP_HOSTS
    }


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def container_address(name: str) -> str:
    return docker(
        "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}', name
    )


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    target = WORKERS[-1]
    inventory = inventory_with_groups(
        tmp_path_factory.mktemp("moved"), {"scheduler": (SCHEDULER, target)}
    )
    # The plays of the tiers whose hosts change: the release, web (its site) and scheduler.
    result = run_playbook("site.yml", {}, inventory=inventory, options=("--tags", "web,scheduler"))
    assert result.returncode == 0, result.stdout[-6000:]
    return target


def test_beat_runs_once_on_the_new_scheduler_only(moved):
    assert beats() == {name: int(name == moved) for name in APP_HOSTS}


def test_the_old_scheduler_keeps_no_beat_or_flower_unit_or_file(moved):
    old = host(SCHEDULER)
    for path in BEAT_FILES:
        assert not old.file(path).exists, path
    units = old.check_output(f"systemctl list-units --all --plain --no-legend '{UNIT_PREFIX}-*'")
    assert "beat" not in units and "flower" not in units
    # Its site keeps Django (it is still a web host) but no longer proxies Flower.
    assert "/flower/" not in old.file(f"/etc/nginx/sites-available/{APP}.conf").content_string


def test_flower_answers_on_the_new_scheduler(moved):
    status, text = http(
        host(moved), "GET", "/flower/api/workers", basic=f"admin:{secret('flower_password')}"
    )
    assert status == 200, text
    assert json.loads(text)


@pytest.fixture(scope="module")
def readdressed(moved, tmp_path_factory):
    old = container_address(BROKER)
    image = docker("inspect", "-f", "{{.Config.Image}}", BROKER)
    docker("rm", "-f", BROKER)
    # A placeholder takes the freed address, so that the new broker gets another one.
    placeholder = f"{BROKER}-placeholder"
    docker("run", "-d", "--name", placeholder, "--network", NETWORK, *PROJECT_LABELS,
           "--entrypoint", "sleep", image, "infinity")  # fmt: skip
    playbook = tmp_path_factory.mktemp("readdress") / "create.yml"
    resources = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "resources"
    playbook.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n"
        f"  vars_files: [{resources / 'platform.yml'}]\n"
        f"  vars: {{dcs_containers: [{{name: {BROKER}}}]}}\n"
        f"  tasks:\n    - ansible.builtin.include_tasks: {resources / 'tasks' / 'containers.yml'}\n"
    )
    try:
        # The scenario's own container platform, on its network.
        created = run_playbook(str(playbook), {"dcs_scenario": "default"})
        assert created.returncode == 0, created.stdout[-3000:]
    finally:
        docker("rm", "-f", placeholder)
    new = container_address(BROKER)
    assert new != old, "docker gave the re-created broker its old address"
    converged = run_playbook("site.yml", {})
    assert converged.returncode == 0, converged.stdout[-6000:]
    return new


def test_the_same_run_moves_the_scheduler_back_and_beat_runs_once_there(readdressed):
    assert beats() == {name: int(name == SCHEDULER) for name in APP_HOSTS}


def test_redis_binds_the_new_address(readdressed):
    listeners = host(BROKER).check_output("ss -Htln | awk '{print $4}'").split()
    assert f"{readdressed}:6379" in listeners


def test_every_app_host_connects_to_the_new_address(readdressed):
    for name in set(QUEUE_HOST.values()) | {WEB}:
        env = host(name).file(f"/etc/{APP}/{APP}.env").content_string
        assert f"@{readdressed}:6379" in env, name


def test_tasks_flow_through_the_new_broker(readdressed, api):
    task_id = api.submit("diagnostics.tasks.ping")
    state = api.wait(task_id, timeout=60)
    assert state["state"] == "SUCCESS", json.dumps(state)
