"""The broker host: a Redis that listens privately, demands a password and keeps its data."""

import time

import pytest
from conftest import BROKER, CONFIG_DIR, FLAVOUR, UNIT, cli

testinfra_hosts = [BROKER]


def journal(host) -> str:
    return host.run(f"journalctl -u {UNIT} -n 50 --no-pager").stdout


def test_redis_runs_and_starts_at_boot(host):
    service = host.service(UNIT)
    assert service.is_running, journal(host)
    assert service.is_enabled


def test_redis_listens_on_localhost_and_the_private_address_only(host):
    private = host.ansible("setup", "filter=ansible_default_ipv4")["ansible_facts"][
        "ansible_default_ipv4"
    ]["address"]
    listening = host.run("ss -Hltn 'sport = :6379'").stdout.split("\n")
    addresses = sorted(line.split()[3] for line in listening if line.strip())
    assert addresses == sorted(["127.0.0.1:6379", f"{private}:6379"]), journal(host)


def test_ping_without_password_is_refused(host):
    result = cli(host, "ping")
    assert "NOAUTH" in result.stdout + result.stderr
    assert "PONG" not in result.stdout


def test_app_user_with_its_password_gets_pong(host, broker_vars):
    result = cli(host, "ping", user="app", password=broker_vars["redis_app_password"])
    assert result.rc == 0
    assert result.stdout.strip() == "PONG"


def test_app_user_with_a_wrong_password_is_refused(host):
    result = cli(host, "ping", user="app", password="not-the-password")
    assert "PONG" not in result.stdout
    assert "WRONGPASS" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "command",
    [
        "FLUSHALL",
        "FLUSHDB",
        "CONFIG GET maxmemory",
        "SHUTDOWN NOSAVE",
        "ACL LIST",
        "SWAPDB 0 1",
        "SCRIPT FLUSH",
        "FUNCTION FLUSH",
        "CLIENT KILL ID 999999",
        "RESTORE k 0 x",
        "PSYNC '?' -1",
        "KEYS '*'",
        "FUNCTION DELETE nosuchlib",
        "BGSAVE",
    ],
)
def test_app_user_cannot_run_dangerous_commands(host, broker_vars, command):
    result = cli(host, command, user="app", password=broker_vars["redis_app_password"])
    assert "NOPERM" in result.stdout + result.stderr
    assert host.service(UNIT).is_running


def test_the_monitor_user_reads_statistics_and_key_sizes_but_no_value(host, broker_vars):
    def as_app(command):
        return cli(host, command, user="app", password=broker_vars["redis_app_password"])

    def as_monitor(command):
        return cli(host, command, user="metrics", password=broker_vars["redis_monitor_password"])

    assert as_app("RPUSH dcs-test-queue secret-task").rc == 0
    try:
        assert "redis_version" in as_monitor("INFO server").stdout
        assert as_monitor("TYPE dcs-test-queue").stdout.strip() == "list"
        assert as_monitor("LLEN dcs-test-queue").stdout.strip() == "1"
        for command in (
            "LRANGE dcs-test-queue 0 -1",
            "GET dcs-test-queue",
            "RPUSH dcs-test-queue x",
        ):
            result = as_monitor(command)
            assert "NOPERM" in result.stdout + result.stderr, command
            assert "secret-task" not in result.stdout
    finally:
        as_app("DEL dcs-test-queue")


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("maxmemory-policy", "noeviction"),
        ("protected-mode", "yes"),
    ],
)
def test_live_configuration_as_admin(host, broker_vars, parameter, expected):
    result = cli(host, f"CONFIG GET {parameter}", password=broker_vars["redis_admin_password"])
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == [parameter, expected]


def test_config_and_acl_files_are_readable_by_redis_only_and_hold_no_plain_password(
    host, broker_vars
):
    for path in (f"{CONFIG_DIR}/{FLAVOUR}.conf", f"{CONFIG_DIR}/users.acl"):
        config = host.file(path)
        assert config.user == FLAVOUR
        assert config.group == FLAVOUR
        assert config.mode == 0o640
    acl = host.file(f"{CONFIG_DIR}/users.acl").content_string
    assert broker_vars["redis_app_password"] not in acl
    assert broker_vars["redis_admin_password"] not in acl
    assert broker_vars["redis_monitor_password"] not in acl


def test_a_key_survives_a_restart(host, broker_vars):
    password = broker_vars["redis_app_password"]
    value = f"survivor-{time.time_ns()}"
    assert (
        cli(host, f"SET dcs:test:restart {value}", user="app", password=password).stdout.strip()
        == "OK"
    )
    host.run_expect([0], f"systemctl restart {UNIT}")
    for _ in range(30):
        if cli(host, "ping", user="app", password=password).stdout.strip() == "PONG":
            break
        time.sleep(1)
    result = cli(host, "GET dcs:test:restart", user="app", password=password)
    assert result.stdout.strip() == value, journal(host)
    cli(host, "DEL dcs:test:restart", user="app", password=password)
