"""Any deployed project, tier by tier: the services each host runs, the release they run and who may
write it, the settings the deployment owns, Celery's queues, Beat and Flower. The default scenario
runs these against the reference app, the cluster scenario against a generated third-party project."""

import json
import re
import time

import dcs_testlib
import pytest
from conftest import (
    APP,
    APP_HOSTS,
    BROKER,
    BROKERS,
    CELERY_APP,
    DATABASE,
    HOSTILE,
    HTTP_PORT,
    HTTPS_PORT,
    INVENTORY,
    NODES,
    ROOT,
    SCENARIO_VARS,
    SCHEDULER,
    SETTINGS_MODULE,
    UNIT_PREFIX,
    WEB,
    WORKERS,
    address,
    celery,
    connect,
    host,
    http,
    journal,
    secret,
)

MONITORING: list[str] = INVENTORY.get_hosts("monitoring")
ALL_HOSTS: list[str] = INVENTORY.get_hosts("all")

# What each host runs, from its groups (a host may be in several).
SERVICES: list[tuple[str, str]] = sorted(
    {(WEB, unit) for unit in ("nginx.service", f"{APP}-gunicorn.socket", f"{APP}-gunicorn.service")}
    | {
        (SCHEDULER, unit)
        for unit in (
            "nginx.service",
            f"{UNIT_PREFIX}-beat.service",
            f"{UNIT_PREFIX}-flower.service",
        )
    }
    | {(node.split("@")[1], f"{UNIT_PREFIX}-worker@{node.split('@')[0]}.service") for node in NODES}
    # With a Redis broker, every worker host watches it for restarts (roles/celery_worker).
    | (
        {(name, f"{UNIT_PREFIX}-redis-unacked.service") for name in WORKERS}
        if SCENARIO_VARS.get("dcs_broker", "redis") == "redis"
        else set()
    )
    # The host firewall (playbooks/firewall.yml) on every host, unless the scenario turns it off.
    | (
        {(name, "nftables.service") for name in ALL_HOSTS}
        if SCENARIO_VARS.get("dcs_firewall_enabled", True)
        else set()
    )
    # With a monitoring host (playbooks/monitoring.yml): exporters everywhere (and Redis' and
    # PostgreSQL's on their hosts), the heartbeat on the
    # scheduler, Prometheus and Alertmanager on the monitoring hosts.
    | (
        {(name, "prometheus-node-exporter.service") for name in ALL_HOSTS}
        | {(name, "prometheus-redis-exporter.service") for name in BROKERS}
        | {
            (name, "prometheus-postgres-exporter.service")
            for name in INVENTORY.get_hosts("database")
        }
        | {(name, "mtail.service") for name in {*INVENTORY.get_hosts("web"), SCHEDULER}}
        | {(SCHEDULER, f"{UNIT_PREFIX}-heartbeat.service")}
        | {
            (name, unit)
            for name in MONITORING
            for unit in ("prometheus.service", "prometheus-alertmanager.service")
        }
        if MONITORING
        else set()
    )
)


@pytest.mark.parametrize(("name", "unit"), SERVICES)
def test_each_host_runs_the_services_of_its_groups(name, unit):
    service = host(name).service(unit)
    assert service.is_running, journal(host(name), unit)
    assert service.is_enabled


APP_SERVICES = [(name, unit) for name, unit in SERVICES if unit.startswith(APP)]


SIZE_UNITS = {"B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_each_hosts_journal_is_kept_on_disk_within_the_size_cap(name):
    """roles/journald: journald, restarted with the drop-in, reports the journal it writes and the
    most it lets it use; that is on disk (/var/log/journal) and at most the cap (1G by default, less
    when the disk must keep journald_system_keep_free free)."""
    cap = INVENTORY.get_variables(name).get("journald_system_max_use", "1G")
    report = host(name).run(
        "journalctl -u systemd-journald -o cat --no-pager | grep '^System Journal (' | tail -n 1"
    )
    match = re.match(r"System Journal \((\S+)\) is \S+, max ([0-9.]+)([BKMGT])", report.stdout)
    assert match, report.stdout + report.stderr
    assert match.group(1).startswith("/var/log/journal/")
    assert float(match.group(2)) * SIZE_UNITS[match.group(3)] <= int(cap[:-1]) * SIZE_UNITS[cap[-1]]


@pytest.mark.parametrize(("name", "unit"), [s for s in APP_SERVICES if s[1].endswith(".service")])
def test_each_app_service_runs_in_the_shared_sandbox_scoring_at_most_2(name, unit):
    """systemd-analyze security: 0 is fully locked down, 10 fully exposed; Debian's redis unit
    scores 1.1. Every Gunicorn, worker, Beat and Flower unit renders dcs.stack.systemd_hardening."""
    report = host(name).check_output(f"systemd-analyze security {unit} | tail -n 1")
    exposure = float(re.search(r"level for \S+: (\d+\.\d+)", report).group(1))
    assert exposure <= 2.0, report


@pytest.mark.parametrize("name", WORKERS)
def test_a_worker_host_runs_no_unit_of_a_queue_it_does_not_list(name):
    units = host(name).check_output(
        f"systemctl list-units --all --plain --no-legend '{UNIT_PREFIX}-worker@*' | cut -d' ' -f1"
    )
    expected = {
        f"{UNIT_PREFIX}-worker@{n.split('@')[0]}.service" for n in NODES if n.endswith(name)
    }
    assert set(units.split()) == expected


@pytest.mark.parametrize("name", APP_HOSTS)
def test_the_app_user_can_read_but_neither_create_nor_change_a_file_in_any_release(name):
    host_ = host(name)
    assert host_.file(f"{ROOT}/releases").is_directory
    # It can read every file and directory (byte-code caches too) and write none.
    unreadable = host_.run(f"runuser -u {APP} -- find -L {ROOT}/releases ! -readable")
    assert (unreadable.rc, unreadable.stdout, unreadable.stderr) == (0, "", "")
    writable = host_.run(f"runuser -u {APP} -- find -L {ROOT}/releases -writable")
    assert (writable.rc, writable.stdout, writable.stderr) == (0, "", "")
    probe = host_.run(f"runuser -u {APP} -- touch {ROOT}/current/probe")
    assert probe.rc != 0


@pytest.mark.parametrize("name", APP_HOSTS)
def test_every_process_runs_the_deployment_overlay_of_the_project_settings(name):
    host_ = host(name)
    env = host_.file(f"/etc/{APP}/{APP}.env")
    assert (env.user, env.group, env.mode) == ("root", APP, 0o640)
    assert 'DJANGO_SETTINGS_MODULE="dcs_settings"' in env.content_string
    text = host_.file(f"{ROOT}/current/dcs_settings.json").content_string
    assert json.loads(text)["project_settings_module"] == SETTINGS_MODULE
    # The overlay's data carries no secret (not even its letters): they stay in the environment file.
    for name in ("app_secret_key", "app_db_password", "redis_app_password"):
        assert secret(name).removesuffix(HOSTILE) not in text


def test_django_check_deploy_reports_no_warning(web):
    result = web.run(f"{ROOT}/bin/manage check --deploy --fail-level WARNING")
    assert result.rc == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


_DATABASE_TLS = """
import json, os, sys
sys.path.insert(0, os.getcwd())
import django
django.setup()
import psycopg
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    over_tls = cursor.fetchone()[0]
s = connection.settings_dict
try:
    psycopg.connect(host=s["HOST"], port=s["PORT"], dbname=s["NAME"], user=s["USER"],
                    password=s["PASSWORD"], sslmode="disable", connect_timeout=5).close()
    plain = "accepted"
except psycopg.OperationalError as error:
    plain = "refused" if "no encryption" in str(error) else str(error)
print(json.dumps([over_tls, plain]))
"""


def test_the_database_refuses_plain_connections_when_the_inventory_requires_tls(web):
    """dcs_database_require_tls: the app's own connection runs over TLS, and the same user from the
    same host without TLS is refused (pg_hba hostssl). Off, a plain connection is accepted."""
    result = dcs_testlib.python(web, _DATABASE_TLS, APP, user=APP)
    assert result.rc == 0, result.stdout + result.stderr
    over_tls, plain = json.loads(result.stdout.strip().splitlines()[-1])
    if str(SCENARIO_VARS.get("dcs_database_require_tls", False)).lower() == "true":
        assert (over_tls, plain) == (True, "refused")
    else:
        assert plain == "accepted"


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
    assert set(json.loads(result.stdout)) == NODES
    user = worker.check_output(f"{ROOT}/bin/run id -un")
    assert user == APP


def test_only_the_scheduler_runs_beat_and_only_once(scheduler):
    pattern = f"'[-]A {CELERY_APP} beat'"
    beats = scheduler.run(f"pgrep -u {APP} -f -- {pattern}").stdout.split()
    assert len(beats) == 1, journal(scheduler, f"{UNIT_PREFIX}-beat.service")
    for other in set(APP_HOSTS) - {SCHEDULER}:
        assert host(other).run(f"pgrep -f -- {pattern}").stdout.split() == []


def test_each_worker_consumes_only_its_own_queue(worker):
    result = celery(worker, "inspect active_queues --json --timeout 10")
    assert result.rc == 0, result.stderr
    consumed = {
        node: {q["name"] for q in queues} for node, queues in json.loads(result.stdout).items()
    }
    assert consumed == {node: {node.split("@")[0]} for node in NODES}


def test_flower_refuses_requests_without_credentials(scheduler):
    assert http(scheduler, "GET", "/flower/api/workers")[0] == 401


def test_flower_lists_every_worker_node(scheduler):
    expected = NODES
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


def test_flower_metrics_are_denied_outside_the_scrape_network(worker):
    assert http(worker, "GET", "/flower/metrics", server=SCHEDULER)[0] == 403


def test_flower_is_denied_to_hosts_outside_the_allowed_networks():
    """Loopback and the app hosts only (flower_allow): the database host gets 403 before any
    password is asked."""
    credentials = f"admin:{secret('flower_password')}"
    status, _ = http(
        host(DATABASE), "GET", "/flower/api/workers", server=SCHEDULER, basic=credentials
    )
    assert status == 403


def test_nginx_names_no_version_in_its_headers_or_error_pages(web):
    status, text = http(web, "GET", "/static/no-such-file.css")
    assert status == 404
    assert "<center>nginx</center>" in text


@pytest.mark.parametrize("by", ["name", "address"])
def test_django_and_flower_answer_by_name_and_by_address(worker, by):
    """From another host, as a client on the private network would ask them."""
    web_server = WEB if by == "name" else address(WEB)
    status, text = http(worker, "GET", "/admin/login/", server=web_server)
    assert status == 200, text
    scheduler_server = SCHEDULER if by == "name" else address(SCHEDULER)
    credentials = f"admin:{secret('flower_password')}"
    status, text = http(
        worker, "GET", "/flower/api/workers", server=scheduler_server, basic=credentials
    )
    assert status == 200, text


LOOPBACK = {"127.0.0.1", "::1", "127.0.0.11"}  # 127.0.0.11: docker's DNS inside the container


def listening(name: str) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket `name` listens on."""
    out = host(name).check_output("ss -Htln | awk '{print $4}'")
    found = set()
    for local in out.split():
        ip, _, port = local.rpartition(":")
        found.add((ip.strip("[]"), int(port)))
    return found


@pytest.mark.parametrize("tier", ["database", "broker"])
def test_the_data_tier_listens_only_on_loopback_and_its_private_address(tier):
    name = DATABASE if tier == "database" else BROKER
    listeners = listening(name)
    assert listeners, "nothing listens"
    stray = {(ip, port) for ip, port in listeners if ip not in LOOPBACK | {address(name)}}
    assert stray == set(), host(name).check_output("ss -tlnp")


@pytest.mark.parametrize("name", APP_HOSTS)
def test_app_hosts_listen_publicly_only_with_nginx(name):
    public = {port for ip, port in listening(name) if ip not in LOOPBACK | {address(name)}}
    assert public <= {HTTP_PORT, HTTPS_PORT}, host(name).check_output("ss -tlnp")


UNLISTED_PORT = 18088


@pytest.mark.parametrize("name", ALL_HOSTS)
def test_each_host_drops_a_connection_to_a_port_its_firewall_does_not_list(name):
    target = host(name)
    assert "policy drop;" in target.check_output("nft list chain inet dcs input")
    dcs_testlib.start_unit(
        target, "dcs-test-listener", f"python3 -m http.server --bind 0.0.0.0 {UNLISTED_PORT}"
    )
    try:
        other = next(peer for peer in ALL_HOSTS if peer != name)
        deadline = time.monotonic() + 10
        while connect(name, name, UNLISTED_PORT) != "open" and time.monotonic() < deadline:
            time.sleep(0.2)
        # It listens (the host itself connects), and another host's connection gets no answer.
        assert connect(name, name, UNLISTED_PORT) == "open"
        assert connect(other, name, UNLISTED_PORT) == "dropped"
    finally:
        target.run("systemctl stop dcs-test-listener")


def test_the_database_answers_a_worker_and_drops_a_host_outside_the_app_groups():
    assert connect(WORKERS[0], DATABASE, 5432) == "open"
    assert connect(BROKER, DATABASE, 5432) == "dropped"


def test_the_broker_answers_a_worker_and_drops_a_host_outside_the_app_groups():
    port = 5672 if SCENARIO_VARS.get("dcs_broker", "redis") == "rabbitmq" else 6379
    assert connect(WORKERS[0], BROKER, port) == "open"
    assert connect(DATABASE, BROKER, port) == "dropped"
