"""What the scenarios' testinfra tests share: the app's command line on a host, its journal, and
HTTP requests made from inside a container (the images carry python3 but not curl).

`app` names the deployed application (app_name; the reference app by default). Commands go through
the wrappers roles/django_app installs: /srv/<app>/bin/run (any command in the current release, as
the app user, with its environment) and bin/celery.
"""

import base64
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

APP = "acme"


def celery(host, args: str, app: str = APP):
    """The Celery CLI on `host` (bin/celery: as the app user with the app's environment)."""
    return host.run(f"/srv/{app}/bin/celery {args}")


def python(host, code: str, app: str = APP, user: str = "root"):
    """Python in the current release's virtualenv with the app's environment, as `user` (root by
    default, for systemctl)."""
    return host.run(
        f"DJANGO_APP_RUN_AS={shlex.quote(user)} PYTHONDONTWRITEBYTECODE=1 "
        f"/srv/{app}/bin/run python -c {shlex.quote(code)}"
    )


def start_unit(host, unit: str, command: str):
    """Run `command` on `host` as the transient systemd unit `unit` (one of that name stopped first):
    the tests' listeners, receivers and load loops."""
    host.run(f"systemctl stop {shlex.quote(unit)}")
    started = host.run(f"systemd-run --unit={shlex.quote(unit)} --property=Type=exec {command}")
    assert started.rc == 0, started.stderr


def drill_report(line: str) -> None:
    """What a drill counted (sent, done, duplicated, lost; requests failed; seconds taken): printed,
    and appended to DCS_DRILL_REPORT (the verifier sets it per scenario) with the test's name, so
    that scripts/test prints every drill's numbers in its summary, passed or failed."""
    print(line)
    path = os.environ.get("DCS_DRILL_REPORT")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].removesuffix(" (call)")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{test}: {line}\n")


def journal(host, unit: str, lines: int = 50) -> str:
    return host.run(f"journalctl -u {shlex.quote(unit)} -n {lines} --no-pager").stdout


_HTTP = r"""
import ssl, sys, urllib.error, urllib.request
method, url, authorization, body = sys.argv[1:5]
request = urllib.request.Request(url, method=method, data=body.encode() or None)
if authorization:
    request.add_header("Authorization", authorization)
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


def http(host, method: str, url: str, *, token: str = "", basic: str = "", body=None):
    """Request `url` from inside `host`; returns (status, text).

    `token` is sent as a bearer token, `basic` ("user:password") as basic auth, `body` as JSON.
    """
    authorization = (
        f"Bearer {token}"
        if token
        else "Basic " + base64.b64encode(basic.encode()).decode()
        if basic
        else ""
    )
    payload = json.dumps(body) if body is not None else ""
    args = " ".join(shlex.quote(a) for a in (method, url, authorization, payload))
    result = host.run(f"python3 -c {shlex.quote(_HTTP)} {args}")
    assert result.rc == 0, result.stderr
    status, _, text = result.stdout.partition("\n")
    return int(status), text.rstrip("\n")


def send_task(host, task: str, queue: str, app: str = APP, timeout: int = 30, celery_app: str = ""):
    """Send `task` to `queue` with the app's Celery client on `host` and wait for its result.

    Returns the command's result; its last stdout line is the task's result as JSON.
    """
    code = (
        "import json; from celery.app.utils import find_app; "
        f"app = find_app({celery_app or app!r}); "
        f"r = app.send_task({task!r}, queue={queue!r}); "
        f"print(json.dumps(r.get(timeout={timeout})))"
    )
    return python(host, code, app)


def restart_during_task(host, queue: str, restart: list[str], app: str = APP, celery_app: str = ""):
    """Restart a queue's worker with the `restart` command while a 6-second task runs on it.

    Returns the command's result; its last two stdout lines are "restart took <seconds>" and
    "<state> <slept> <worker hostname>" of the task.
    """
    code = f"""
import subprocess, time
from celery.app.utils import find_app
app = find_app({celery_app or app!r})
r = app.send_task("diagnostics.tasks.sleep", args=[6], queue={queue!r})
deadline = time.time() + 30
while r.state != "STARTED" and time.time() < deadline:
    time.sleep(0.2)
assert r.state == "STARTED", r.state
began = time.time()
subprocess.run({restart!r}, check=True)
print("restart took", round(time.time() - began, 1))
result = r.get(timeout=60)
print(r.state, result["slept"], result["hostname"])
"""
    return python(host, code, app)


def run_playbook(
    playbook: str,
    extra_vars: dict,
    timeout: int = 900,
    inventory: str = "",
    options: tuple[str, ...] = (),
):
    """Run one of the project's playbooks against the scenario's hosts, as an operator would, with
    `extra_vars` on top of the scenario's inventory (or `inventory`, a file beside which its
    group_vars/ and host_vars/ are linked) and further command-line `options`; returns the completed
    process (output merged)."""
    project = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(extra_vars, handle)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ephemeral / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(project / "roles"),
        "ANSIBLE_COLLECTIONS_PATH": f"{project / 'collections'}:{project / '.collections'}",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    try:
        return subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-i",
                inventory or os.environ["MOLECULE_INVENTORY_FILE"],
                "-e",
                f"@{handle.name}",
                *options,
                str(project / playbook),
            ],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    finally:
        os.unlink(handle.name)


def inventory_with_groups(directory: Path, moves: dict[str, tuple[str, str]]) -> str:
    """A copy of the scenario's inventory in `directory` where `moves` maps a group to (host that
    leaves it, host that joins it); its group_vars/ and host_vars/ are the scenario's. Returns its path."""
    import yaml

    source = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    inventory = yaml.safe_load(source.read_text())
    for group, (leaves, joins) in moves.items():
        # Molecule writes each group as a top-level key of its inventory.
        hosts = inventory[group]["hosts"]
        del hosts[leaves]
        hosts[joins] = inventory["all"]["hosts"][joins]
    directory.mkdir(parents=True, exist_ok=True)
    for linked in ("group_vars", "host_vars"):
        if (source.parent / linked).exists():
            (directory / linked).symlink_to((source.parent / linked).resolve())
    target = directory / source.name
    target.write_text(yaml.safe_dump(inventory))
    return str(target)
