"""What the full-stack tests share: the inventory, the scenario's secrets and two ways in.

HTTP requests are made from inside the web and scheduler containers to their own nginx on
localhost, the way a client on those hosts would; Celery commands run on the worker as the app
user with the app's environment.
"""

import json
import os
import shlex
import time
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
WEB = INVENTORY.get_hosts("web")[0]
WORKER = INVENTORY.get_hosts("workers")[0]
SCHEDULER = INVENTORY.get_hosts("scheduler")[0]
BROKER = INVENTORY.get_hosts("broker")[0]
DATABASE = INVENTORY.get_hosts("database")[0]
SCENARIO_VARS = INVENTORY.get_variables(WEB)
QUEUES: dict[str, dict] = SCENARIO_VARS["celery_queues"]

# The reference app as group_vars/all/app.yml deploys it.
APP = "acme"
APP_ENV_FILE = f"/etc/{APP}/{APP}.env"
RELEASE = f"/srv/{APP}/current"
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


def journal(host, unit: str) -> str:
    return host.run(f"journalctl -u {shlex.quote(unit)} -n 40 --no-pager").stdout


_HTTP = r"""
import base64, ssl, sys, urllib.error, urllib.request
method, url, token, basic, body = sys.argv[1:6]
request = urllib.request.Request(url, method=method, data=body.encode() or None)
if token:
    request.add_header("Authorization", "Bearer " + token)
if basic:
    request.add_header("Authorization", "Basic " + base64.b64encode(basic.encode()).decode())
if body:
    request.add_header("Content-Type", "application/json")
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE  # the test hosts' certificates are self-signed
try:
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        print(response.status)
        print(response.read().decode())
except urllib.error.HTTPError as error:
    print(error.code)
    print(error.read().decode())
"""


def http(host, method: str, path: str, *, server="localhost", token="", basic="", body=None):
    """Request https://<server><path> from `host` (its own nginx by default); returns (status, text)."""
    payload = json.dumps(body) if body is not None else ""
    args = " ".join(
        shlex.quote(a) for a in (method, f"https://{server}{path}", token, basic, payload)
    )
    result = host.run(f"python3 -c {shlex.quote(_HTTP)} {args}")
    assert result.rc == 0, result.stderr
    status, _, text = result.stdout.partition("\n")
    return int(status), text


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


def celery(host, args: str):
    """The Celery CLI on `host`, as the app user with the app's environment."""
    script = f"set -a; . {APP_ENV_FILE}; set +a; cd {RELEASE}; exec venv/bin/celery -A {APP} {args}"
    return host.run(f"runuser -u {APP} -- sh -c {shlex.quote(script)}")
