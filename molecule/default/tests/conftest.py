"""What the full-stack tests share: the inventory, the scenario's secrets and two ways in.

HTTP requests are made from inside the web and scheduler containers to their own nginx on
localhost, the way a client on those hosts would; Celery commands run on the worker as the app
user with the app's environment.
"""

import json
import os
import time
from pathlib import Path

import dcs_testlib
import pytest
import testinfra.utils.ansible_runner
from dcs_testlib import celery, journal  # noqa: F401 (the tests import them from here)

INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
WEB = INVENTORY.get_hosts("web")[0]
WORKER = INVENTORY.get_hosts("workers")[0]
SCHEDULER = INVENTORY.get_hosts("scheduler")[0]
BROKER = INVENTORY.get_hosts("broker")[0]
DATABASE = INVENTORY.get_hosts("database")[0]
SCENARIO_VARS = INVENTORY.get_variables(WEB)
QUEUES: dict[str, dict] = SCENARIO_VARS["celery_queues"]

# The reference app as group_vars/all/app.yml deploys it.
APP = dcs_testlib.APP
UNIT_PREFIX = f"{APP}-celery"

SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"


def secret(name: str) -> str:
    """A throwaway secret the scenario generated (inventory/group_vars/stack.yml)."""
    return (SECRETS / name).read_text().split()[0]


@pytest.fixture(scope="session")
def web():
    return INVENTORY.get_host(WEB)


@pytest.fixture(scope="session")
def worker():
    return INVENTORY.get_host(WORKER)


@pytest.fixture(scope="session")
def scheduler():
    return INVENTORY.get_host(SCHEDULER)


@pytest.fixture(scope="session")
def broker():
    return INVENTORY.get_host(BROKER)


def http(host, method: str, path: str, *, server="localhost", token="", basic="", body=None):
    """Request https://<server><path> from `host` (its own nginx by default); returns (status, text)."""
    return dcs_testlib.http(
        host, method, f"https://{server}{path}", token=token, basic=basic, body=body
    )


class TaskApi:
    """The app's JSON task API, called through nginx and Gunicorn on the web host."""

    def __init__(self, host):
        self.host = host
        self.token = secret("app_task_api_token")

    def post(self, path: str, body: dict) -> dict:
        status, text = http(self.host, "POST", path, token=self.token, body=body)
        assert status in (201, 202), (status, text)
        return json.loads(text)

    def get(self, path: str) -> dict:
        status, text = http(self.host, "GET", path, token=self.token)
        assert status == 200, (status, text)
        return json.loads(text)

    def submit(self, task: str, *args, **options) -> str:
        return self.post("/api/tasks/", {"task": task, "args": list(args), **options})["id"]

    def wait(self, task_id: str, timeout: float = 90) -> dict:
        """Poll the result backend (through the API) until the task has finished."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.get(f"/api/tasks/{task_id}/")
            if state["state"] in ("SUCCESS", "FAILURE") or time.monotonic() > deadline:
                return state
            time.sleep(1)


@pytest.fixture(scope="session")
def api(web) -> TaskApi:
    return TaskApi(web)
