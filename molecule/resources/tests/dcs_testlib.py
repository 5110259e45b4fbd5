"""What the scenarios' testinfra tests share: the app's command line on a host, its journal, and
HTTP requests made from inside a container (the images carry python3 but not curl).

The scenarios deploy the reference app as group_vars/all/app.yml describes it; `app` names it.
"""

import base64
import json
import shlex

APP = "acme"


def app_shell(app: str = APP) -> str:
    """Shell prelude: the app's environment file exported, the current release as working dir."""
    return (
        f"set -a; . /etc/{app}/{app}.env; set +a; cd /srv/{app}/current; "
        "export PYTHONDONTWRITEBYTECODE=1"
    )


def celery(host, args: str, app: str = APP):
    """The Celery CLI on `host`, as the app user with the app's environment."""
    script = f"{app_shell(app)}; exec venv/bin/celery -A {app} {args}"
    return host.run(f"runuser -u {app} -- sh -c {shlex.quote(script)}")


def python(host, code: str, app: str = APP):
    """Python in the release's virtualenv with the app's environment, as root (for systemctl)."""
    script = (
        f"{app_shell(app)}; export DJANGO_SETTINGS_MODULE={app}.settings; "
        f"exec venv/bin/python -c {shlex.quote(code)}"
    )
    return host.run(f"sh -c {shlex.quote(script)}")


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


def send_task(host, task: str, queue: str, app: str = APP, timeout: int = 30):
    """Send `task` to `queue` with the app's Celery client on `host` and wait for its result.

    Returns the command's result; its last stdout line is the task's result as JSON.
    """
    code = (
        f"import json; from {app}.celery import app; "
        f"r = app.send_task({task!r}, queue={queue!r}); "
        f"print(json.dumps(r.get(timeout={timeout})))"
    )
    return python(host, code, app)


def restart_during_task(host, queue: str, restart: list[str], app: str = APP):
    """Restart a queue's worker with the `restart` command while a 6-second task runs on it.

    Returns the command's result; its last two stdout lines are "restart took <seconds>" and
    "<state> <slept> <worker hostname>" of the task.
    """
    code = f"""
import subprocess, time
from {app}.celery import app
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
