"""What the full-stack tests share: the inventory, the scenario's secrets and two ways in.

HTTP requests are made from inside the web and scheduler containers to their own nginx on
localhost, the way a client on those hosts would; Celery commands run on the worker as the app
user with the app's environment (bin/celery, bin/run). The default scenario deploys the reference
app; the cluster scenario a generated third-party project: APP and CELERY_APP come from the inventory.
"""

import json
import os
import shlex
import time
from pathlib import Path

import dcs_testlib
import pytest
import testinfra.utils.ansible_runner
from dcs_testlib import journal  # noqa: F401 (the tests import it from here)

INVENTORY = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
WEB = INVENTORY.get_hosts("web")[0]
WORKERS: list[str] = INVENTORY.get_hosts("workers")
WORKER = WORKERS[0]
SCHEDULER = INVENTORY.get_hosts("scheduler")[0]
BROKERS: list[str] = INVENTORY.get_hosts("broker")
BROKER = BROKERS[0]
DATABASE = INVENTORY.get_hosts("database")[0]
APP_HOSTS: list[str] = sorted(set(INVENTORY.get_hosts("web") + WORKERS + [SCHEDULER]))
SCENARIO_VARS = INVENTORY.get_variables(WEB)
QUEUES: dict[str, dict] = SCENARIO_VARS["celery_queues"]
DEFAULT_QUEUE: str = SCENARIO_VARS["celery_default_queue"]
# The ports nginx serves on (group_vars/all/app.yml; the cluster scenario moves them).
HTTP_PORT = int(SCENARIO_VARS["app_http_port"])
HTTPS_PORT = int(SCENARIO_VARS["app_https_port"])


def worker_queues(host: str) -> list[str]:
    """The queues a worker host runs: its celery_worker_queues, or (the default, a template) all."""
    queues = INVENTORY.get_variables(host).get("celery_worker_queues")
    return queues if isinstance(queues, list) else list(QUEUES)


# Celery node names (<queue>@<host>) of every worker, and the host that runs each queue.
NODES: set[str] = {f"{queue}@{host}" for host in WORKERS for queue in worker_queues(host)}
QUEUE_HOST: dict[str, str] = {queue: host for host in WORKERS for queue in worker_queues(host)}
# Every Celery node that consumes each queue (a queue may run on several worker hosts).
QUEUE_NODES: dict[str, set[str]] = {
    queue: {f"{queue}@{host}" for host in WORKERS if queue in worker_queues(host)}
    for queue in QUEUES
}

APP: str = SCENARIO_VARS["app_name"]
CELERY_APP: str = SCENARIO_VARS["app_celery_app"]
SETTINGS_MODULE: str = SCENARIO_VARS["app_settings_module"]
UNIT_PREFIX = f"{APP}-celery"
ROOT = f"/srv/{APP}"

SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets"


# Every secret ends in these characters, but the two that their protocol keeps plain (stack.yml).
HOSTILE: str = SCENARIO_VARS["__dcs_hostile"]
PLAIN_SECRETS = {"app_task_api_token", "rabbitmq_erlang_cookie"}


def secret(name: str) -> str:
    """A throwaway secret the scenario generated (inventory/group_vars/stack.yml)."""
    generated = (SECRETS / name).read_text().split()[0]
    return generated if name in PLAIN_SECRETS else generated + HOSTILE


def host(name: str):
    """The testinfra host of an inventory host name."""
    return INVENTORY.get_host(name)


def address(name: str) -> str:
    """The private address of an inventory host (its default route's)."""
    return host(name).check_output(
        "ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([^ ]*\\).*/\\1/p'"
    )


# Connects to ADDRESS:PORT and says how it went: open, refused (nothing listens) or dropped (no
# answer: a firewall).
PROBE = """
import socket, sys
address, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
s.settimeout(timeout)
try:
    s.connect((address, port))
    print("open")
except socket.timeout:
    print("dropped")
except ConnectionRefusedError:
    print("refused")
"""


def connect(source: str, target: str, port: int) -> str:
    """How a TCP connection from host `source` to host `target`'s private address goes."""
    return host(source).check_output(
        f"python3 -c {shlex.quote(PROBE)} {address(target)} {port} 1.5"
    )


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


@pytest.fixture(scope="session")
def database():
    return INVENTORY.get_host(DATABASE)


def celery(host, args: str):
    """bin/celery on `host`: the deployed app's Celery command line."""
    return dcs_testlib.celery(host, args, APP)


def with_app(host, body: str):
    """Run Python `body` on `host` as the app user, with `app` bound to the deployed app's Celery
    application; returns what its last output line holds as JSON."""
    code = (
        "import json, time\nfrom celery.app.utils import find_app\n"
        f"app = find_app({CELERY_APP!r})\n{body}"
    )
    result = dcs_testlib.python(host, code, APP, user=APP)
    assert result.rc == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def send(host, task: str, *, args=(), kwargs=None, timeout: int = 60, **options) -> dict:
    """Send `task` from `host` with the deployed app's Celery client (its routes decide the
    queue unless `queue` is given) and return its result."""
    return with_app(
        host,
        f"r = app.send_task({task!r}, args={list(args)!r}, kwargs={kwargs or {}!r}, **{options!r})\n"
        f"print(json.dumps(r.get(timeout={timeout})))",
    )


def http(host, method: str, path: str, *, server="localhost", token="", basic="", body=None):
    """Request https://<server>:<HTTPS_PORT><path> from `host` (its own nginx by default); returns
    (status, text)."""
    return dcs_testlib.http(
        host, method, f"https://{server}:{HTTPS_PORT}{path}", token=token, basic=basic, body=body
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
