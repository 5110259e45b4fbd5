"""The stack's alert rules, rendered with the repository's defaults as the monitoring hosts get
them, pass `promtool check rules`, and each alert fires when its unit test says and not before
(`promtool test rules` on tests/alert_rules/stack.test.yml, with the default thresholds)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from control_node import run_playbook

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "alert_rules"


# A stack as an operator describes it: RabbitMQ on three nodes, one host of every other group, the
# monitoring host alone. Only the monitoring host is rendered for (on the control node); the others
# are never contacted and only lend their addresses.
STACK = {
    "database": {"db1": "10.0.0.10"},
    "broker": {"mq1": "10.0.0.21", "mq2": "10.0.0.22", "mq3": "10.0.0.23"},
    "web": {"web1": "10.0.0.31"},
    "workers": {"worker1": "10.0.0.41"},
    "scheduler": {"sched1": "10.0.0.51"},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("alert_rules")
    hosts = {
        group: {
            "hosts": {name: {"dcs_private_address": address} for name, address in members.items()}
        }
        for group, members in STACK.items()
    }
    hosts["monitoring"] = {
        "hosts": {
            "promtest": {
                "dcs_private_address": "10.0.0.61",
                "dcs_broker": "rabbitmq",
                "ansible_python_interpreter": sys.executable,
            }
        }
    }
    inventory = directory / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": hosts}}))
    result = run_playbook(
        HERE / "render.yml",
        inventory,
        {
            "rules_file": str(directory / "rules.yml"),
            "config_file": str(directory / "prometheus.yml"),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    shutil.copy(HERE / "stack.test.yml", directory / "stack.test.yml")
    return directory


@pytest.fixture(scope="module")
def rules(rendered) -> Path:
    return rendered / "rules.yml"


@pytest.fixture(scope="module")
def config(rendered) -> Path:
    return rendered / "prometheus.yml"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "scripts" / "promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_promtool_accepts_every_rule(rules):
    result = promtool("check", "rules", str(rules), cwd=rules.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_when_its_unit_test_says(rules):
    result = promtool("test", "rules", "stack.test.yml", cwd=rules.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_a_runbook(rules):
    groups = yaml.safe_load(rules.read_text())["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}
    tested = {
        case["alertname"]
        for test in yaml.safe_load((HERE / "stack.test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert set(alerts) == tested
    assert [name for name, rule in alerts.items() if not rule["annotations"].get("runbook")] == []


def test_promtool_accepts_the_scrape_configuration(config):
    result = promtool("check", "config", "--syntax-only", str(config), cwd=config.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_of_the_inventory_is_scraped_where_it_runs(config):
    jobs = {
        job["job_name"]: sorted(
            (static["labels"]["host"], target)
            for static in job["static_configs"]
            for target in static["targets"]
        )
        for job in yaml.safe_load(config.read_text())["scrape_configs"]
    }
    brokers = STACK["broker"].items()
    everyone = {
        **{n: a for members in STACK.values() for n, a in members.items()},
        "promtest": "10.0.0.61",
    }
    assert jobs["node"] == sorted((name, f"{address}:9100") for name, address in everyone.items())
    assert jobs["rabbitmq"] == sorted((name, f"{address}:15692") for name, address in brokers)
    assert jobs["redis"] == sorted((name, f"{address}:9121") for name, address in brokers)
    assert jobs["postgres"] == [("db1", "10.0.0.10:9187")]
    assert jobs["nginx"] == [("sched1", "10.0.0.51:3903"), ("web1", "10.0.0.31:3903")]
    assert jobs["heartbeat"] == [("sched1", "10.0.0.51:9808")]
    assert jobs["flower"] == [("sched1", "10.0.0.51:443")]
