"""Every host's firewall rules come from the inventory: rendered with the repository's defaults for
a stack of every tier (RabbitMQ on two nodes, a monitoring host), each host accepts what its groups
serve, from the hosts that use it, and nothing else (tests/firewall/render.yml). The rules run on
the containers of the default and cluster scenarios (test_tiers.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from control_node import run_playbook

ROOT = Path(__file__).resolve().parent.parent
STACK = {
    "database": {"db1": "10.0.0.10"},
    "broker": {"mq1": "10.0.0.21", "mq2": "10.0.0.22"},
    "web": {"web1": "10.0.0.31"},
    "workers": {"worker1": "10.0.0.41"},
    "scheduler": {"sched1": "10.0.0.51"},
    "monitoring": {"db1": "10.0.0.10"},
}
APP = ["10.0.0.31", "10.0.0.41", "10.0.0.51"]


def render(directory: Path, extra_vars: dict) -> subprocess.CompletedProcess:
    hosts = {
        group: {
            "hosts": {name: {"dcs_private_address": address} for name, address in members.items()}
        }
        for group, members in STACK.items()
    }
    inventory = directory / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {"all": {"vars": {"ansible_python_interpreter": sys.executable}, "children": hosts}}
        )
    )
    return run_playbook(
        ROOT / "tests" / "firewall" / "render.yml",
        inventory,
        {"out_dir": str(directory), "dcs_broker": "rabbitmq", **extra_vars},
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("firewall")
    result = render(directory, {})
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


def accepted(rendered: Path, name: str) -> dict[int | str, set[str]]:
    """Port (or "low-high" range) -> sources the host accepts ("any" for every source)."""
    ports: dict[int | str, set[str]] = {}
    for rule in json.loads((rendered / f"{name}.json").read_text()):
        for port in map(str, rule["ports"]):
            ports.setdefault(int(port) if port.isdigit() else port, set()).update(rule["sources"])
    return ports


def test_every_host_accepts_ssh_from_anywhere_and_its_node_exporter_from_monitoring(rendered):
    for members in STACK.values():
        for name in members:
            ports = accepted(rendered, name)
            assert ports[22] == {"any"}, name
            assert ports[9100] == {"10.0.0.10"}, name


def test_the_database_answers_the_app_hosts_only(rendered):
    assert accepted(rendered, "db1") == {
        22: {"any"},
        9100: {"10.0.0.10"},
        5432: set(APP),
        9187: {"10.0.0.10"},
    }


def test_a_broker_node_answers_the_app_hosts_and_the_other_nodes(rendered):
    assert accepted(rendered, "mq1") == {
        22: {"any"},
        9100: {"10.0.0.10"},
        6379: set(APP),
        5672: set(APP),
        4369: {"10.0.0.21", "10.0.0.22"},
        25672: {"10.0.0.21", "10.0.0.22"},
        "35672-35682": {"10.0.0.21", "10.0.0.22"},
        9121: {"10.0.0.10"},
        15692: {"10.0.0.10"},
    }
    table = (rendered / "mq1.nft").read_text()
    assert (
        "ip saddr 10.0.0.22 tcp dport { 4369, 25672, 35672-35682 } accept"
        ' comment "epmd and erlang distribution from the other broker nodes"'
    ) in table


def test_the_web_host_serves_http_to_anyone_and_a_worker_serves_nothing(rendered):
    assert accepted(rendered, "web1") == {
        22: {"any"},
        9100: {"10.0.0.10"},
        80: {"any"},
        443: {"any"},
        3903: {"10.0.0.10"},
    }
    assert accepted(rendered, "worker1") == {22: {"any"}, 9100: {"10.0.0.10"}}


def test_the_web_and_scheduler_hosts_open_the_ports_nginx_is_given_and_not_the_usual_ones(tmp_path):
    result = render(tmp_path, {"app_http_port": 8080, "app_https_port": 8443})
    assert result.returncode == 0, result.stdout + result.stderr
    web = accepted(tmp_path, "web1")
    assert (web[8080], web[8443]) == ({"any"}, {"any"})
    assert 80 not in web and 443 not in web
    scheduler = accepted(tmp_path, "sched1")
    assert scheduler[8443] - {"127.0.0.1", "::1"} == {*APP, "10.0.0.10"}
    assert 80 not in scheduler and 443 not in scheduler


def test_the_scheduler_serves_flower_to_the_app_and_monitoring_hosts_only(rendered):
    ports = accepted(rendered, "sched1")
    assert ports[443] - {"127.0.0.1", "::1"} == {*APP, "10.0.0.10"}
    assert ports[9808] == {"10.0.0.10"}


def test_the_table_drops_what_no_rule_accepts(rendered):
    table = (rendered / "worker1.nft").read_text()
    assert "policy drop;" in table
    assert "flush ruleset" not in table
    rules = [
        line.strip()
        for line in table.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert [rule for rule in rules if "accept" in rule] == [
        'iif "lo" accept',
        "ct state established,related accept",
        "meta l4proto { icmp, ipv6-icmp } accept",
        'tcp dport { 22 } accept comment "ssh"',
        'ip saddr 10.0.0.10 tcp dport { 9100 } accept comment "node exporter from the monitoring hosts"',
    ]


def test_nft_accepts_every_hosts_table(rendered):
    """`nft --check` parses each table as the role's template task validates it on the host."""
    tables = sorted(rendered.glob("*.nft"))
    assert [table.stem for table in tables] == sorted(
        {name for members in STACK.values() for name in members}
    )
    for table in tables:
        check = subprocess.run(
            ["nft", "--check", "--file", str(table)], capture_output=True, text=True
        )
        assert check.returncode == 0, f"{table.name}: {check.stderr}"


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        (
            {"name": "backups", "ports": [873], "sources": ["backup.internal"]},
            "['backup.internal']",
        ),
        ({"name": "backups", "ports": [873], "sources": ["999.1.1.1"]}, "['999.1.1.1']"),
        ({"name": "rsync; flush ruleset", "ports": [873], "sources": ["any"]}, "needs a `name`"),
        ({"name": "backups", "ports": [70000], "sources": ["any"]}, "ports 1-65535"),
        ({"name": "backups", "ports": ["873-800"], "sources": ["any"]}, "ranges"),
        ({"name": "backups", "ports": ["873-"], "sources": ["any"]}, "ranges"),
        ({"name": "backups", "ports": [873], "sources": "10.0.0.9"}, "a list of IP addresses"),
    ],
)
def test_a_rule_the_role_cannot_load_is_refused_with_what_to_fix(tmp_path, rule, named):
    result = render(tmp_path, {"dcs_firewall_extra_rules": [rule]})
    assert result.returncode != 0, result.stdout
    assert named in result.stdout, result.stdout
    assert not list(tmp_path.glob("*.nft"))
