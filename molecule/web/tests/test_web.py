"""The web tier: a Django release in /srv/acme served by Gunicorn (systemd socket) behind nginx with TLS."""

import json
import shlex
import time
import uuid

import pytest

APP = "acme"
ROOT = f"/srv/{APP}"
SOCKET_UNIT = f"{APP}-gunicorn.socket"
SERVICE_UNIT = f"{APP}-gunicorn.service"
HANDOVER_UNIT = f"{APP}-gunicorn-handover.service"
WORKERS = 3
HEALTHZ = "curl -sk --max-time 60 https://localhost/healthz"


def journal(host, unit: str) -> str:
    return host.run(f"journalctl -u {unit} -n 50 --no-pager").stdout


def main_pid(host) -> int:
    return int(host.check_output(f"systemctl show -p MainPID --value {SERVICE_UNIT}"))


def boot_window(host) -> tuple[float, float]:
    """When the service's new master started (systemd starts it once every process of the old one
    has exited) and when it was ready (a worker had loaded the application: READY=1, Type=notify),
    in seconds of the monotonic clock, by systemd."""
    shown = dict(
        line.split("=", 1)
        for line in host.check_output(
            "systemctl show -p ExecMainStartTimestampMonotonic "
            f"-p ActiveEnterTimestampMonotonic {SERVICE_UNIT}"
        ).splitlines()
    )
    started = int(shown["ExecMainStartTimestampMonotonic"]) / 1e6
    ready = int(shown["ActiveEnterTimestampMonotonic"]) / 1e6
    assert 0 < started < ready, shown
    return started, ready


@pytest.mark.parametrize("unit", [SOCKET_UNIT, SERVICE_UNIT, "nginx.service"])
def test_unit_is_enabled_and_active(host, unit):
    service = host.service(unit)
    assert service.is_enabled, journal(host, unit)
    assert service.is_running, journal(host, unit)


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("Type", "notify"),
        # A worker, not the master, says when the service is ready (gunicorn.conf.py).
        ("NotifyAccess", "all"),
        ("KillMode", "mixed"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("User", APP),
    ],
)
def test_gunicorn_service_is_notify_type_and_sandboxed(host, prop, value):
    assert host.check_output(f"systemctl show -p {prop} --value {SERVICE_UNIT}") == value


def test_systemd_waits_longer_than_the_graceful_timeout(host):
    stop = host.check_output(f"systemctl show -p TimeoutStopUSec --value {SERVICE_UNIT}")
    graceful = host.check_output(f"sed -n 's/^graceful_timeout = //p' /etc/{APP}/gunicorn.conf.py")
    assert stop.endswith("s")
    assert int(stop.removesuffix("s")) > int(graceful), (stop, graceful)


def test_socket_is_owned_by_the_web_server_user(host):
    sock = host.file(f"/run/{APP}/gunicorn.sock")
    assert sock.is_socket
    assert (sock.user, sock.group, sock.mode) == ("www-data", "www-data", 0o660)


def test_gunicorn_master_and_workers_run_as_the_app_user(host):
    pid = main_pid(host)
    master_user = host.check_output(f"ps -o user= -p {pid}")
    workers = host.check_output(f"ps -o user= --ppid {pid}").split()
    assert master_user == APP
    assert workers == [APP] * WORKERS, journal(host, SERVICE_UNIT)


def test_healthz_through_nginx_reports_every_check_ok(host):
    result = host.run(f"{HEALTHZ} -w '\\n%{{http_code}}'")
    body, _, status = result.stdout.rpartition("\n")
    assert status == "200", (result.stdout, journal(host, SERVICE_UNIT))
    payload = json.loads(body)
    assert payload["status"] == "ok"
    assert set(payload["checks"].values()) == {"ok"}


def test_logrotate_rotates_the_nginx_logs_and_nginx_then_writes_to_the_new_ones(host):
    timer = host.service("logrotate.timer")
    assert timer.is_enabled and timer.is_running
    assert host.run(HEALTHZ).rc == 0
    rotated = host.run("logrotate --force /etc/logrotate.d/nginx")
    assert rotated.rc == 0, rotated.stderr
    assert host.file("/var/log/nginx/access.log.1").exists
    new = host.file("/var/log/nginx/access.log")
    assert (new.user, new.group, new.mode) == ("www-data", "adm", 0o640)
    # nginx reopens its logs (SIGUSR1 from the policy's postrotate) a moment after the signal; until
    # then its requests go to the renamed file.
    for _ in range(50):
        marker = f"rotated-{uuid.uuid4().hex}"
        host.run(f"curl -sk -o /dev/null 'https://localhost/healthz?{marker}'")
        if marker in new.content_string:
            break
        time.sleep(0.1)
    assert marker in new.content_string
    assert marker not in host.file("/var/log/nginx/access.log.1").content_string


def test_plain_http_redirects_to_https(host):
    out = host.check_output(
        "curl -s -o /dev/null -w '%{http_code} %{redirect_url}' http://localhost/healthz"
    )
    assert out == "301 https://localhost/healthz"


def test_nginx_serves_the_collected_static_files(host):
    out = host.check_output(
        "curl -sk -D - -o /tmp/base.css https://localhost/static/admin/css/base.css"
        " | tr -d '\\r' | grep -iE '^(HTTP|server|cache-control)'"
    )
    headers = out.lower()
    assert " 200" in headers.splitlines()[0]
    assert "server: nginx" in headers
    assert "cache-control: max-age=" in headers
    assert (
        host.check_output(f"cmp /tmp/base.css {ROOT}/static/admin/css/base.css && echo same")
        == "same"
    )


def test_environment_file_is_readable_only_by_root_and_the_app_group(host):
    env = host.file(f"/etc/{APP}/{APP}.env")
    assert (env.user, env.group, env.mode) == ("root", APP, 0o640)
    # Every process runs the deployment's overlay, which imports the project's own settings.
    assert 'DJANGO_SETTINGS_MODULE="dcs_settings"' in env.content_string


def test_the_settings_overlay_imports_the_project_settings_and_sets_static_root(host):
    data = json.loads(host.file(f"{ROOT}/current/dcs_settings.json").content_string)
    assert data["project_settings_module"] == "acme.settings"
    static_root = host.check_output(
        f"{ROOT}/bin/manage shell -v 0 -c 'from django.conf import settings; print(settings.STATIC_ROOT)'"
    )
    assert static_root == f"{ROOT}/static"


def test_current_points_to_a_complete_release_with_a_virtualenv(host):
    current = host.file(f"{ROOT}/current")
    assert current.is_symlink
    release = current.linked_to
    release_id = release.rsplit("/", 1)[-1]
    assert host.file(f"{release}/.release").content_string.strip() == release_id
    assert host.run(f"{release}/venv/bin/python -c 'import django, gunicorn'").rc == 0


def test_app_user_cannot_rewrite_its_code(host):
    result = host.run(f"runuser -u {APP} -- touch {ROOT}/current/manage.py")
    assert result.rc != 0
    writable = host.check_output(f"runuser -u {APP} -- find {ROOT}/releases -writable")
    assert writable == ""
    assert (
        host.run(f"runuser -u {APP} -- touch /var/lib/{APP}/probe && rm /var/lib/{APP}/probe").rc
        == 0
    )


def test_manage_wrapper_runs_commands_as_the_app_user(host):
    uid = host.check_output(f"{ROOT}/bin/manage shell -v 0 -c 'import os; print(os.getuid())'")
    assert uid == host.check_output(f"id -u {APP}")


def test_deployment_checks_ran_for_the_current_release(host):
    report = host.file(f"/var/lib/{APP}/check-deploy.txt").content_string
    release_id = host.file(f"{ROOT}/current").linked_to.rsplit("/", 1)[-1]
    assert f"release: {release_id}" in report
    assert "System check identified" in report


_LOOP = r"""
import os, ssl, sys, time, urllib.error, urllib.request
out, stop = sys.argv[1:3]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with open(out, "w") as rows:
    while not os.path.exists(stop):
        began = time.monotonic()
        try:
            with urllib.request.urlopen("https://localhost/healthz", timeout=60, context=context) as r:
                code = r.status
        except urllib.error.HTTPError as error:
            code = error.code
        except Exception as error:
            code = type(error).__name__
        rows.write(f"{code} {began:.6f} {time.monotonic():.6f}\n")
        rows.flush()
"""


def requests_during(host, commands: str) -> tuple[list[tuple[str, float, float]], str]:
    """/healthz requested through nginx one after another, from a second before `commands` run until
    a second after: each request's status code, and when it began and ended (the monotonic clock,
    the one systemd's timestamps use); and what `commands` printed."""
    script = (
        f"rm -f /tmp/stop; python3 -c {shlex.quote(_LOOP)} /tmp/requests /tmp/stop & "
        f"loop=$!; sleep 1; {commands}; sleep 1; touch /tmp/stop; wait $loop"
    )
    result = host.run(f"bash -c {shlex.quote(script)}")
    assert result.rc == 0, result.stderr
    rows = [line.split() for line in host.file("/tmp/requests").content_string.splitlines()]
    return [(code, float(began), float(ended)) for code, began, ended in rows], result.stdout


def answered_while_booting(host, rows) -> list[float]:
    """How long each request took that was answered while the service's new master booted: after
    it started (the old one gone) and before a worker of it had loaded the application."""
    started, ready = boot_window(host)
    assert rows[0][1] < started and rows[-1][2] > ready, "no request ran before or after"
    return [ended - began for _, began, ended in rows if started < ended < ready]


def test_a_handover_restart_makes_no_request_wait_for_a_boot_as_a_plain_restart_does(host):
    """A plain restart behind the socket refuses no request, but no request is answered while its
    new master boots (the old one gone, no worker of the new one ready): they wait in the socket. The role's handlers restart by a handover instead: the handover instance starts
    on the same socket, ready only once a worker has loaded the application; the service restarts
    meanwhile; the handover instance stops once the service is ready again. Requests go on being
    answered through the whole restart."""
    before = main_pid(host)
    rows, _ = requests_during(host, f"systemctl restart {SERVICE_UNIT}")
    assert main_pid(host) != before, "the service was not restarted"
    assert {code for code, _, _ in rows} == {"200"}, (rows, journal(host, SERVICE_UNIT))
    plain = answered_while_booting(host, rows)
    # No process serves the socket then: the old master and its workers have exited, and no new
    # worker has loaded the application (0 in 10 runs, quiet or loaded; one is allowed for the
    # moment between a worker's READY=1 and systemd recording it).
    assert len(plain) <= 1, plain

    before = main_pid(host)
    rows, out = requests_during(
        host,
        f"systemctl start {HANDOVER_UNIT}; "
        f"systemctl show -p StatusText --value {HANDOVER_UNIT}; "
        f"systemctl restart {SERVICE_UNIT}; systemctl stop {HANDOVER_UNIT}",
    )
    assert main_pid(host) != before, "the service was not restarted"
    codes = {code for code, _, _ in rows}
    assert codes == {"200"}, (rows, journal(host, SERVICE_UNIT), journal(host, HANDOVER_UNIT))
    # Ready means a worker has loaded the application, not that the master listens.
    assert "has loaded the application" in out, out
    # The handover's workers answered while the service's new master booted (40-58 requests in 10
    # runs, quiet or loaded).
    handover = answered_while_booting(host, rows)
    assert len(handover) >= 10, {"handover": handover, "plain restart": plain}
    assert not host.service(HANDOVER_UNIT).is_running
    # No [Install] section: only the handlers start it.
    assert host.run(f"systemctl is-enabled {HANDOVER_UNIT}").stdout.strip() == "static"


def test_reload_replaces_workers_but_keeps_the_master(host):
    master = main_pid(host)
    old = host.check_output(f"ps -o pid= --ppid {master} | xargs")
    host.run_expect([0], f"systemctl reload {SERVICE_UNIT}")
    # Old workers finish their requests and exit; wait until none of them is left.
    settled = host.run(
        f'timeout 30 sh -c \'while ps -o pid= --ppid {master} | grep -qwE "$(echo {old} | tr " " "|")"; '
        "do sleep 1; done'"
    )
    assert settled.rc == 0, journal(host, SERVICE_UNIT)
    assert main_pid(host) == master
    assert len(host.check_output(f"ps -o pid= --ppid {master}").split()) == WORKERS
    assert host.run(f"{HEALTHZ} -f -o /dev/null").rc == 0


def test_gunicorn_workers_run_in_the_release_directory_not_current(host):
    """gunicorn.conf.py names the release (a new one reloads into it); each worker's working
    directory is that release, so it imports from it alone."""
    release = host.file(f"{ROOT}/current").linked_to
    assert f'chdir = "{release}"' in host.file(f"/etc/{APP}/gunicorn.conf.py").content_string
    master = host.check_output(f"systemctl show --property=MainPID --value {SERVICE_UNIT}")
    workers = host.check_output(f"pgrep -P {master}").split()
    assert workers
    assert {host.check_output(f"readlink /proc/{pid}/cwd") for pid in workers} == {release}
