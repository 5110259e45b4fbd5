"""Any deployed project, tier by tier: the services each host runs, the release they run and who may
write it, the settings the deployment owns, Celery's queues, Beat and Flower. The default scenario
runs these against the reference app, the rabbitmq scenario against a generated third-party project."""

import json
import time

import pytest
from conftest import (
    APP,
    CELERY_APP,
    HOSTILE,
    QUEUES,
    ROOT,
    SCHEDULER,
    SETTINGS_MODULE,
    UNIT_PREFIX,
    WORKER,
    celery,
    http,
    journal,
    secret,
)

SERVICES = {
    "web": ["nginx.service", f"{APP}-gunicorn.socket", f"{APP}-gunicorn.service"],
    "scheduler": [
        "nginx.service",
        f"{UNIT_PREFIX}-beat.service",
        f"{UNIT_PREFIX}-flower.service",
    ],
    "worker": [f"{UNIT_PREFIX}-worker@{queue}.service" for queue in QUEUES],
}
APP_HOSTS = ["web", "worker", "scheduler"]


@pytest.mark.parametrize(
    ("tier", "unit"),
    [(tier, unit) for tier, units in SERVICES.items() for unit in units],
)
def test_each_tier_runs_its_services(request, tier, unit):
    host = request.getfixturevalue(tier)
    service = host.service(unit)
    assert service.is_running, journal(host, unit)
    assert service.is_enabled


@pytest.mark.parametrize("tier", APP_HOSTS)
def test_the_app_user_can_read_but_neither_create_nor_change_a_file_in_any_release(request, tier):
    host = request.getfixturevalue(tier)
    assert host.file(f"{ROOT}/releases").is_directory
    # It can read every file and directory (byte-code caches too) and write none.
    unreadable = host.run(f"runuser -u {APP} -- find -L {ROOT}/releases ! -readable")
    assert (unreadable.rc, unreadable.stdout, unreadable.stderr) == (0, "", "")
    writable = host.run(f"runuser -u {APP} -- find -L {ROOT}/releases -writable")
    assert (writable.rc, writable.stdout, writable.stderr) == (0, "", "")
    probe = host.run(f"runuser -u {APP} -- touch {ROOT}/current/probe")
    assert probe.rc != 0


@pytest.mark.parametrize("tier", APP_HOSTS)
def test_every_process_runs_the_deployment_overlay_of_the_project_settings(request, tier):
    host = request.getfixturevalue(tier)
    env = host.file(f"/etc/{APP}/{APP}.env")
    assert (env.user, env.group, env.mode) == ("root", APP, 0o640)
    assert 'DJANGO_SETTINGS_MODULE="dcs_settings"' in env.content_string
    text = host.file(f"{ROOT}/current/dcs_settings.json").content_string
    assert json.loads(text)["project_settings_module"] == SETTINGS_MODULE
    # The overlay's data carries no secret (not even its letters): they stay in the environment file.
    for name in ("app_secret_key", "app_db_password", "redis_app_password"):
        assert secret(name).removesuffix(HOSTILE) not in text


def test_django_check_deploy_reports_no_warning(web):
    result = web.run(f"{ROOT}/bin/manage check --deploy --fail-level WARNING")
    assert result.rc == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_migrations_ran_against_postgresql(web, database):
    engine = web.check_output(
        f"{ROOT}/bin/manage shell -v 0 -c "
        "'from django.db import connection; print(connection.vendor)'"
    )
    assert engine == "postgresql"
    applied = database.check_output(
        f"runuser -u postgres -- psql -d {APP} -Atc "
        f"\"select count(*) from {APP}.django_migrations where app in ('auth', 'admin', 'sessions')\""
    )
    assert int(applied) > 10
    unapplied = web.check_output(
        f"{ROOT}/bin/manage showmigrations --plan | grep -c '\\[ \\]' || true"
    )
    assert unapplied == "0"


def test_the_admin_login_page_answers_through_nginx_with_its_css(web):
    status, page = http(web, "GET", "/admin/login/")
    assert status == 200, page
    assert "/static/admin/css/base.css" in page
    status, css = http(web, "GET", "/static/admin/css/base.css")
    assert status == 200
    assert "body" in css


def test_bin_celery_runs_the_apps_celery_as_the_app_user(worker):
    result = celery(worker, "inspect ping --json --timeout 10")
    assert result.rc == 0, result.stderr
    assert set(json.loads(result.stdout)) == {f"{queue}@{WORKER}" for queue in QUEUES}
    user = worker.check_output(f"{ROOT}/bin/run id -un")
    assert user == APP


def test_only_the_scheduler_runs_beat_and_only_once(scheduler, worker, web):
    pattern = f"'[-]A {CELERY_APP} beat'"
    beats = scheduler.run(f"pgrep -u {APP} -f -- {pattern}").stdout.split()
    assert len(beats) == 1, journal(scheduler, f"{UNIT_PREFIX}-beat.service")
    for other in (worker, web):
        assert other.run(f"pgrep -f -- {pattern}").stdout.split() == []


def test_each_worker_consumes_only_its_own_queue(worker):
    result = celery(worker, "inspect active_queues --json --timeout 10")
    assert result.rc == 0, result.stderr
    consumed = {
        node: {q["name"] for q in queues} for node, queues in json.loads(result.stdout).items()
    }
    assert consumed == {f"{queue}@{WORKER}": {queue} for queue in QUEUES}


def test_flower_refuses_requests_without_credentials(scheduler):
    assert http(scheduler, "GET", "/flower/api/workers")[0] == 401


def test_flower_lists_every_worker_node(scheduler):
    expected = {f"{queue}@{WORKER}" for queue in QUEUES}
    credentials = f"admin:{secret('flower_password')}"
    deadline = time.monotonic() + 45
    while True:
        status, text = http(scheduler, "GET", "/flower/api/workers?refresh=1", basic=credentials)
        nodes = set(json.loads(text)) if status == 200 else set()
        if nodes >= expected or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status == 200
    assert nodes == expected


def test_flower_metrics_are_served_to_the_scrape_network(scheduler):
    status, text = http(scheduler, "GET", "/flower/metrics")
    assert status == 200
    assert "flower_events_total" in text


def test_flower_metrics_are_denied_outside_the_scrape_network(web):
    assert http(web, "GET", "/flower/metrics", server=SCHEDULER)[0] == 403
