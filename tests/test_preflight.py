"""Bad inventories and settings fail in preflight, on the control node, before any host is touched.

Each case runs site.yml against the local inventory (groups.yml + inventories/local) with one
thing wrong, most with `--limit dcs-local-web`; the preflight play (its checks run once, on the
control node) must stop the run with a message naming the fix before any play contacts a host.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRETS = [
    "vault_app_secret_key",
    "vault_app_db_password",
    "vault_app_task_api_token",
    "vault_redis_app_password",
    "vault_redis_admin_password",
    "vault_flower_password",
    "vault_rabbitmq_app_password",
    "vault_rabbitmq_erlang_cookie",
    "vault_backup_cipher_pass",
]


def run_site(
    tmp_path: Path,
    extra_vars: dict,
    extra_inventory: str = "",
    limit: str = "dcs-local-web",
    group_vars: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """site.yml on the local inventory with one thing wrong. Like an operator deploying one host,
    every case runs with `--limit dcs-local-web` unless it says otherwise (limit="": the whole
    inventory): preflight must stop the run whatever the limit leaves out."""
    secrets = {name: f"test-only-{name}-0123456789-abcdefghijklmnopqrstuvwxyz" for name in SECRETS}
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps({**secrets, **extra_vars}))
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        "groups.yml",
        "-i",
        "inventories/local/hosts.yml",
        "-e",
        f"@{vars_file}",
        "site.yml",
    ]
    if extra_inventory:
        inventory = tmp_path / "extra.yml"
        inventory.write_text(extra_inventory)
        command[5:5] = ["-i", str(inventory)]
    if group_vars:
        # An inventory directory whose group_vars/<group>.yml override the defaults, as an
        # environment's do (variables in a hosts file rank below group_vars/all).
        inventory_dir = tmp_path / "inventory"
        (inventory_dir / "group_vars").mkdir(parents=True)
        (inventory_dir / "hosts.yml").write_text("all: {}\n")
        for group, content in group_vars.items():
            (inventory_dir / "group_vars" / f"{group}.yml").write_text(content)
        command[5:5] = ["-i", str(inventory_dir / "hosts.yml")]
    if limit:
        command[1:1] = ["--limit", limit]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_stopped_in_preflight(result: subprocess.CompletedProcess, message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
    # Only the control node ran anything: the run stopped before the first play that contacts a
    # host (the checks run delegated to localhost), so no container of the inventory was touched.
    assert "PLAY [Gather the facts of every host" not in output, output
    assert "changed=" in output and "changed=1" not in output, output


def test_two_schedulers_are_refused(tmp_path):
    second = "all:\n  children:\n    scheduler:\n      hosts:\n        dcs-local-scheduler2: {}\n"
    result = run_site(tmp_path, {}, second, limit="")
    assert_stopped_in_preflight(result, "it must have exactly one: two Celery Beats")


def test_a_rabbitmq_cluster_of_two_nodes_is_refused(tmp_path):
    second = "all:\n  children:\n    broker:\n      hosts:\n        dcs-local-broker2: {}\n"
    result = run_site(tmp_path, {"dcs_broker": "rabbitmq"}, second, limit="")
    assert_stopped_in_preflight(result, "a 2-node RabbitMQ cluster stops when either node does")


def test_a_missing_secret_is_named(tmp_path):
    result = run_site(tmp_path, {"vault_flower_password": ""})
    assert_stopped_in_preflight(result, "vault_flower_password is missing")


def test_a_backup_passphrase_with_a_trailing_blank_is_refused(tmp_path):
    result = run_site(tmp_path, {"vault_backup_cipher_pass": "a-long-enough-passphrase-0123 "})
    assert_stopped_in_preflight(result, "vault_backup_cipher_pass (the backup repository")


def test_acme_for_a_web_host_without_a_public_name_is_refused(tmp_path):
    # The local inventory's web host answers to localhost and addresses only.
    result = run_site(tmp_path, {"app_acme_enabled": True})
    assert_stopped_in_preflight(result, "app_acme_domains must list the DNS")


def test_an_unknown_broker_is_refused(tmp_path):
    result = run_site(tmp_path, {"dcs_broker": "kafka"})
    assert_stopped_in_preflight(result, "dcs_broker is 'kafka'; set it to one of redis, rabbitmq")


def test_a_queue_no_worker_consumes_is_refused(tmp_path):
    result = run_site(tmp_path, {"celery_worker_queues": ["notifications", "reports"]})
    assert_stopped_in_preflight(result, "No worker host consumes the queue 'media'")


def test_a_soft_limit_above_the_hard_limit_is_refused(tmp_path):
    queues = {"q": {"pool": "prefork", "concurrency": 1, "time_limit": 60, "soft_time_limit": 90}}
    result = run_site(
        tmp_path,
        {"celery_queues": queues, "celery_default_queue": "q", "celery_worker_queues": ["q"]},
    )
    assert_stopped_in_preflight(result, "soft_time_limit below time_limit")


def test_time_limits_on_a_pool_that_cannot_enforce_them_are_refused_by_queue_and_pool(tmp_path):
    queues = {
        "fast": {"pool": "prefork", "concurrency": 2, "time_limit": 60, "soft_time_limit": 50},
        "io": {"pool": "threads", "concurrency": 8, "time_limit": 60, "soft_time_limit": 50},
    }
    result = run_site(
        tmp_path,
        {
            "celery_queues": queues,
            "celery_default_queue": "fast",
            "celery_worker_queues": ["fast", "io"],
        },
    )
    assert_stopped_in_preflight(
        result,
        "queue io (pool threads) sets time_limit/soft_time_limit, which Celery enforces only",
    )


def test_a_gunicorn_timeout_shorter_than_the_publish_retries_is_refused(tmp_path):
    result = run_site(tmp_path, {"gunicorn_timeout": 20})
    assert_stopped_in_preflight(result, "gunicorn_timeout (20 s) must be longer than publishing")


def test_a_redis_visibility_timeout_shorter_than_a_task_is_refused(tmp_path):
    result = run_site(tmp_path, {"celery_redis_visibility_timeout": 600})
    assert_stopped_in_preflight(result, "celery_redis_visibility_timeout (600 s) must be longer")


def test_a_rabbitmq_consumer_timeout_shorter_than_a_task_is_refused(tmp_path):
    result = run_site(
        tmp_path, {"dcs_broker": "rabbitmq", "celery_rabbitmq_consumer_timeout_ms": 60000}
    )
    assert_stopped_in_preflight(result, "celery_rabbitmq_consumer_timeout_ms (60000) must exceed")


def project(tmp_path: Path, lock: str = "celery==5.6.3\n") -> Path:
    """A minimal project laid out like app/ (package acme) with the given lock."""
    app = tmp_path / "app"
    (app / "acme").mkdir(parents=True)
    for name in ("manage.py", "acme/__init__.py", "acme/settings.py", "acme/wsgi.py"):
        (app / name).write_text("")
    (app / "requirements.lock").write_text(lock)
    return app


@pytest.mark.parametrize("pin", ["celery==5.6.2", "celery[redis]==5.5.3"])
def test_quorum_queues_need_celery_5_6_3(tmp_path, pin):
    app = project(tmp_path, f"kombu==5.7.0\n{pin}\n")
    result = run_site(tmp_path, {"dcs_broker": "rabbitmq", "app_source_dir": str(app)})
    assert_stopped_in_preflight(result, "Quorum queues need Celery >= 5.6.3")


def test_a_secret_key_too_short_for_django_is_refused(tmp_path):
    result = run_site(
        tmp_path, {"vault_app_secret_key": "only-forty-characters-long-0123456789-abc"}
    )
    assert_stopped_in_preflight(result, "vault_app_secret_key must have at least 50 characters")


def test_a_directory_without_manage_py_is_refused(tmp_path):
    app = project(tmp_path)
    (app / "manage.py").unlink()
    result = run_site(tmp_path, {"app_source_dir": str(app)})
    assert_stopped_in_preflight(result, "must be the Django project's directory (it holds")


def test_a_settings_module_the_project_lacks_is_refused(tmp_path):
    app = project(tmp_path)
    result = run_site(
        tmp_path, {"app_source_dir": str(app), "app_settings_module": "acme.settings.production"}
    )
    assert_stopped_in_preflight(result, "acme.settings.production is not a module of the project")


@pytest.mark.parametrize("limit", ["dcs-local-web", "workers", "dcs-local-db"])
def test_a_bad_input_stops_in_preflight_whatever_limit_says(tmp_path, limit):
    result = run_site(tmp_path, {"dcs_broker": "kafka"}, limit=limit)
    assert_stopped_in_preflight(result, "dcs_broker is 'kafka'; set it to one of redis, rabbitmq")


def test_a_bad_queue_override_for_one_group_stops_in_preflight(tmp_path):
    workers_override = (
        "celery_queues:\n"
        "  notifications: {pool: prefork, concurrency: 2, time_limit: 60, soft_time_limit: 60}\n"
        "  reports: {pool: prefork, concurrency: 1, time_limit: 1800, soft_time_limit: 1700}\n"
        "  media: {pool: threads, concurrency: 2, time_limit: 300, soft_time_limit: 270}\n"
    )
    result = run_site(tmp_path, {}, group_vars={"workers": workers_override})
    assert_stopped_in_preflight(
        result, "dcs-local-worker: celery_queues notifications: pool must be"
    )


def test_queue_definitions_that_differ_between_hosts_are_refused(tmp_path):
    result = run_site(tmp_path, {}, group_vars={"web": "celery_default_queue: reports\n"})
    assert_stopped_in_preflight(result, "celery_default_queue differs between hosts")


def test_a_secret_with_a_line_break_is_refused_by_name(tmp_path):
    result = run_site(tmp_path, {"vault_redis_app_password": "first-line-0123456789\nsecond-line"})
    assert_stopped_in_preflight(
        result, "vault_redis_app_password contains a line break, which an environment file cannot"
    )


def test_a_comma_in_the_flower_password_is_refused(tmp_path):
    result = run_site(tmp_path, {"vault_flower_password": "with,a-comma-0123456789"})
    assert_stopped_in_preflight(
        result, "vault_flower_password and dcs_flower_user cannot hold a comma"
    )


@pytest.mark.parametrize(
    "ports",
    [
        {"app_https_port": 80},
        {"app_http_port": 0},
        {"app_https_port": 70000},
        {"app_http_port": "80 "},
    ],
)
def test_nginx_ports_that_are_not_two_distinct_port_numbers_are_refused(tmp_path, ports):
    result = run_site(tmp_path, ports)
    assert_stopped_in_preflight(result, "must be two different port numbers from 1 to 65535")


@pytest.mark.parametrize("url", ["", "mailto:ops@example.org", "http://hooks example/alerts"])
def test_monitoring_without_a_webhook_url_for_its_alerts_is_refused(tmp_path, url):
    # inventories/local puts dcs-local-db in the monitoring group.
    result = run_site(tmp_path, {"dcs_alert_webhook_url": url})
    assert_stopped_in_preflight(result, "dcs_alert_webhook_url is not an http:// or https:// URL")


def test_a_host_name_as_private_address_is_refused_while_the_firewall_filters(tmp_path):
    """The firewall filters on addresses: a private address that is a name stops the run right
    after the (read-only) fact gathering, before the first play that changes a host."""
    hosts = [
        "dcs-local-db",
        "dcs-local-broker",
        "dcs-local-web",
        "dcs-local-worker",
        "dcs-local-scheduler",
    ]
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {
        "all": {
            "hosts": {
                name: {
                    **local,
                    **({"dcs_private_address": "broker.internal"} if "broker" in name else {}),
                }
                for name in hosts
            }
        }
    }
    result = run_site(tmp_path, {}, extra_inventory=json.dumps(inventory), limit="")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (
        "the private address of dcs-local-broker is not an IP address (broker.internal)" in output
    ), output
    assert "PLAY [Filter inbound traffic" not in output, output
