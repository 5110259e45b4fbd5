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
