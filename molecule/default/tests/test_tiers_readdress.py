"""A host whose address changes (a re-created container, a re-provisioned VM) gets the new one on
the next run: the broker is re-created on another address and site.yml converges again; Redis binds
the new address, every app host's URLs name it, and tasks flow. (Runs after the other tests.)"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import APP, BROKER, QUEUE_HOST, WEB, host
from dcs_testlib import run_playbook

NETWORK = "dcs-default"
PROJECT_LABELS = ["--label", "dcs.project=django-celery-stack", "--label", "dcs.scenario=default"]


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def container_address(name: str) -> str:
    return docker(
        "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}', name
    )


@pytest.fixture(scope="module")
def readdressed(tmp_path_factory):
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
